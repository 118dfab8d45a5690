"""The OpenAI-compatible gateway: ``POST /v1/chat/completions`` and ``POST /v1/completions``
(plain or streamed) and ``GET /v1/models``, served by the LLM router (local first, circuit
breakers, fallback) and billed by its ledger exactly as an ``llm`` agent's calls are.

A plain ASGI app, in the llm layer so that the engine may serve it too: ``omium serve``
mounts it in front of the REST API (``omium.api.gateway``), and a CLI run (or a worker with no
gateway URL) serves it on loopback inside its process (``omium.llm.local_gateway``).

Callers present a tenant's API key (checked by ``keys``, which the API gives) or an execution
token (``omium.llm.gateway_token``): the latter bills the execution's tenant with the execution
and agent on each usage record. Errors are OpenAI's shape, never a traceback.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from omium.ids import random_hex
from omium.llm.gateway_openai import (
    CHAT,
    SSE_DONE,
    TEXT,
    ChatRequest,
    GatewayError,
    client_chunk,
    dumps,
    llm_failure,
    parse_request,
    sse,
    usage_chunk,
    usage_json,
)
from omium.llm.gateway_token import TokenError, TokenSigner, is_execution_token
from omium.llm.router import LLMResult, LLMRouter

log = logging.getLogger("omium.gateway")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

# Larger than the REST API's 1 MiB: chat bodies carry whole conversations and images.
DEFAULT_MAX_BODY = 16 * 1024 * 1024
_ROUTES = {"/chat/completions": ("POST", CHAT), "/completions": ("POST", TEXT),
           "/models": ("GET", "models")}
_JSON = (b"content-type", b"application/json")
_SSE = ((b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache"))
_CHALLENGE = ((b"www-authenticate", b"Bearer"),)


@dataclass(frozen=True)
class Caller:
    """Whom a call bills: a tenant, and with an execution token its execution and agent."""

    tenant_id: str
    execution_id: str | None = None
    agent_id: str | None = None
    attempt: int | None = None

    def usage_key(self) -> str | None:
        """The usage record's idempotency key: findable by execution and agent (the router
        makes a random one for a tenant's own calls)."""
        if self.execution_id is None:
            return None
        return f"{self.execution_id}:{self.agent_id}:{self.attempt}:gw-{random_hex(12)}"


# A tenant API key -> its caller, None if unknown/revoked; may raise GatewayError (e.g. 403).
KeyCheck = Callable[[str], Awaitable[Caller | None]]


class Gateway:
    """``router()`` gives the router to call (it may build one on first use, and raise
    ``LLMConfigError``); ``signer`` checks execution tokens, ``keys`` tenant keys."""

    def __init__(self, router: Callable[[], LLMRouter], *, signer: TokenSigner | None = None,
                 keys: KeyCheck | None = None, max_body_bytes: int = DEFAULT_MAX_BODY) -> None:
        self._router = router
        self.signer, self.keys, self.max_body_bytes = signer, keys, max_body_bytes
        # Streamed calls run as their own tasks (see _stream): kept here so that none is
        # collected mid-way, and so that aclose can wait for their billing.
        self._calls: set[asyncio.Future[LLMResult]] = set()

    async def aclose(self) -> None:
        """Wait for calls still under way (they bill when they end)."""
        if self._calls:
            await asyncio.gather(*self._calls, return_exceptions=True)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":  # served alone: nothing to start or stop
            while (await receive())["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "http":
            return
        try:
            await self._handle(scope, receive, send)
        except GatewayError as err:
            await _send_json(send, err.status, err.body(), err.headers)
        except Exception:  # a bug: logged here, the client gets OpenAI's 500 shape
            log.exception("gateway error on %s %s", scope["method"], scope["path"])
            await _send_json(send, 500, GatewayError(
                500, "internal server error", type_="server_error").body())

    async def _handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = _route_path(scope)
        method, kind = _ROUTES.get(route) or (("GET", "model") if route.startswith("/models/")
                                              else (None, None))
        if kind is None:
            raise GatewayError(404, f"unknown path {scope['path']}", code="unknown_url")
        if scope["method"] != method:
            raise GatewayError(405, f"{scope['method']} is not allowed here (use {method})",
                               code="method_not_allowed", headers=((b"allow",
                                                                   method.encode()),))
        caller = await self._caller(scope)
        if kind in ("models", "model"):
            await _send_json(send, 200, self._models(route[len("/models/"):] if kind == "model"
                                                     else None))
            return
        req = parse_request(kind, await self._body(scope, receive))
        if req.stream:
            await self._stream(send, req, caller)
            return
        result = await self._call(req, caller, None)
        headers = ((b"x-omium-backend", result.backend.encode()),
                   (b"x-omium-cost-usd", str(result.cost).encode()))
        if result.raw_body is not None and result.raw is not None and \
                isinstance(result.raw.get("usage"), dict):
            # The server's answer as it is, billed by its own usage: its bytes go back
            # untouched rather than decoded and encoded again.
            await _send_bytes(send, 200, result.raw_body, headers)
            return
        body = dict(result.raw) if result.raw is not None else {"choices": [
            {"index": 0, "message": {"role": "assistant", "content": result.text}}]}
        if not isinstance(body.get("usage"), dict):  # counted by Omium: say what was billed
            body["usage"] = usage_json(result.usage)
        await _send_json(send, 200, body, headers)

    # -- who is calling
    async def _caller(self, scope: Scope) -> Caller:
        token = _bearer(scope)
        if token is None:
            raise GatewayError(401, "missing API key: send Authorization: Bearer <key> (an "
                               "Omium API key, or the agent's ctx.llm_api_key)",
                               code="invalid_api_key", headers=_CHALLENGE)
        if is_execution_token(token) and self.signer is not None:
            try:
                grant = self.signer.verify(token)
            except TokenError as err:
                raise GatewayError(401, str(err), code="invalid_api_key",
                                   headers=_CHALLENGE) from None
            return Caller(grant.tenant_id, grant.execution_id, grant.agent_id, grant.attempt)
        if self.keys is not None and (found := await self.keys(token)) is not None:
            return found
        raise GatewayError(401, "invalid or revoked API key", code="invalid_api_key",
                           headers=_CHALLENGE)

    async def _body(self, scope: Scope, receive: Receive) -> bytes:
        too_large = GatewayError(413, f"request body exceeds {self.max_body_bytes} bytes",
                                 code="request_too_large")
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and value.isdigit() and \
                    int(value) > self.max_body_bytes:
                raise too_large
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client left
                raise GatewayError(400, "the client disconnected", code="client_closed")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise too_large
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    # -- answers
    def _models(self, one: str | None) -> dict[str, Any]:
        models = [{"id": m, "object": "model", "created": 0, "owned_by": "omium"}
                  for m in dict.fromkeys(b.model for b in self._router_now().config.ordered())]
        if one is None:
            return {"object": "list", "data": models}
        for m in models:
            if m["id"] == one:
                return m
        raise GatewayError(404, f"the model {one!r} does not exist here",
                           code="model_not_found", param="model")

    def _router_now(self) -> LLMRouter:
        try:
            return self._router()
        except Exception as err:
            if (failure := llm_failure(err)) is None:
                raise
            raise failure from None

    async def _call(self, req: ChatRequest, caller: Caller,
                    on_chunk: Callable[[dict[str, Any]], None] | None) -> LLMResult:
        router = self._router_now()
        kwargs: dict[str, Any] = {
            "model": req.model, "max_tokens": req.max_tokens, "temperature": req.temperature,
            "stream": req.stream, "on_chunk": on_chunk, "extra": req.extra,
            "tenant_id": caller.tenant_id, "execution_id": caller.execution_id,
            "agent_id": caller.agent_id, "idempotency_key": caller.usage_key()}
        try:
            if req.kind == CHAT:
                return await router.chat(req.payload, **kwargs)
            return await router.complete(req.payload, **kwargs)
        except Exception as err:
            if (failure := llm_failure(err)) is None:
                raise
            raise failure from None

    async def _stream(self, send: Send, req: ChatRequest, caller: Caller) -> None:
        """Chunks go out as the backend sends them. The answer's status waits for the first
        chunk, so a call refused or failed before any (402, 404, 502, ...) is a plain JSON
        error; a failure after it is an ``error`` event. The call runs as its own task and
        is never cancelled for a client that left: its tokens are spent and get billed."""
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        call = asyncio.ensure_future(self._call(req, caller, queue.put_nowait))
        self._calls.add(call)
        call.add_done_callback(self._calls.discard)
        call.add_done_callback(lambda _: queue.put_nowait(None))
        chunk = await queue.get()
        if chunk is None:
            await call  # failed before any chunk: raises its GatewayError
        await send({"type": "http.response.start", "status": 200, "headers": _SSE})
        last, saw_usage = None, False
        while chunk is not None:
            last, saw_usage = chunk, saw_usage or isinstance(chunk.get("usage"), dict)
            if (out := client_chunk(chunk, req.include_usage)) is not None:
                await send({"type": "http.response.body", "body": sse(out), "more_body": True})
            chunk = await queue.get()
        try:
            result = await call
        except GatewayError as err:
            tail = sse(err.body())
        except Exception as err:
            log.exception("gateway stream failed")
            tail = sse(GatewayError(500, f"internal server error ({type(err).__name__})",
                                    type_="server_error").body())
        else:
            tail = SSE_DONE
            if req.include_usage and not saw_usage:
                tail = sse(usage_chunk(req.kind, last, result.model, result.usage)) + tail
        await send({"type": "http.response.body", "body": tail, "more_body": False})


def _route_path(scope: Scope) -> str:
    """The path below the gateway's ``/v1``, served alone or mounted (under a root path)."""
    path: str = scope["path"]
    root = scope.get("root_path") or ""
    if root and path.startswith(root):
        path = path[len(root):]
    return path[3:] if path.startswith("/v1/") else path


def _bearer(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            token = token.strip()
            return token if scheme.lower() == "bearer" and token else None
    return None


async def _send_json(send: Send, status: int, body: Any,
                     headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
    await _send_bytes(send, status, dumps(body), headers)


async def _send_bytes(send: Send, status: int, data: bytes,
                      headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [_JSON, (b"content-length", str(len(data)).encode()), *headers]})
    await send({"type": "http.response.body", "body": data})
