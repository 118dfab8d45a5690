"""The LLM gateway (``omium.llm.gateway``) on ``omium serve``: ``/v1/...`` beside ``/api/v1``.

It is dispatched before the REST API's JSON and size rules (``GatewayDispatch``), because it
answers in OpenAI's shapes and takes larger bodies; the slow-client deadlines still apply.
Callers: a tenant's API key (the API's own authenticator and its cache) or an execution token
signed with the deployment's ``OMIUM_GATEWAY_SECRET``. Its router is built from the LLM config
on the first call and bills the API's store; it is closed at shutdown.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from omium.llm.gateway import Caller, Gateway
from omium.llm.gateway_openai import GatewayError
from omium.llm.gateway_token import TokenSigner, new_secret

if TYPE_CHECKING:
    from omium.api.app import Stop
    from omium.llm.router import LLMRouter

PREFIX = "/v1/"


class GatewayDispatch:
    """Sends ``/v1/...`` to the gateway and everything else on to the REST API."""

    def __init__(self, app: ASGIApp, gateway: Gateway) -> None:
        self.app, self.gateway = app, gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(PREFIX):
            await self.gateway(scope, receive, send)  # type: ignore[arg-type]
        else:
            await self.app(scope, receive, send)


def signer_for(secret: str | None) -> TokenSigner:
    """The deployment's signer; without a secret, one of this process alone (enough for one
    process; ``omium serve`` always hands its processes one)."""
    return TokenSigner(secret.encode() if secret else new_secret())


def build_gateway(app: FastAPI) -> Gateway:
    state = app.state

    def router() -> LLMRouter:
        if state.gateway_router is None:  # on the first call: the config is read then
            from omium.billing.ledger import Ledger
            from omium.llm.config import load_config
            from omium.llm.router import LLMRouter

            state.gateway_router = LLMRouter(load_config(), ledger=Ledger(state.store))
        return state.gateway_router  # type: ignore[no-any-return]

    async def keys(token: str) -> Caller | None:
        who = await state.auth.principal(state.store, token)
        if who is None:
            return None
        if who.tenant_id is None:
            raise GatewayError(403, "this admin key belongs to no tenant: use a tenant's key",
                               code="permission_denied")
        return Caller(who.tenant_id)

    state.gateway_router = None
    return Gateway(router, signer=state.gateway_signer, keys=keys)


async def close_gateway(app: FastAPI) -> Stop:
    """A startup hook whose stop waits for streamed calls, then closes the router."""

    async def stop() -> None:
        await app.state.gateway.aclose()
        if app.state.gateway_router is not None:
            await app.state.gateway_router.aclose()
            app.state.gateway_router = None

    return stop
