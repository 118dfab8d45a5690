"""Each agent's OpenAI-compatible endpoint (``ctx.llm_base_url``, ``llm_api_key``,
``llm_model``), made when the agent first reads it.

In the service it is the gateway of ``omium serve`` (``base_url``, from ``OMIUM_GATEWAY_URL``)
with an execution token signed with the deployment's secret. In a CLI run, or a worker given
no URL, it is this process's own gateway (``omium.llm.local_gateway``), started on first need
on 127.0.0.1 and a random port, signing with a random secret of its own. Nothing is started,
and nothing of the llm layer imported (the router, uvicorn), for agents that never ask.

How a run's agents find these: the context variable ``ENDPOINTS``, set by the executor or the
worker around the run's task (``start_run``) and read where each attempt's context is made
(``engine.attempts``). A variable, not an argument: the endpoints belong to the process that
drives runs, and ``Run`` (shared with other work) passes its agents only the router.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from omium.agents.base import AgentContext, EndpointSource, LLMEndpoint
from omium.errors import LLMConfigError

if TYPE_CHECKING:
    from omium.llm.config import LLMConfig
    from omium.llm.gateway_token import TokenSigner
    from omium.llm.local_gateway import LocalGateway
    from omium.llm.router import LLMRouter

T = TypeVar("T")

# A token outlives its agent's attempt by little: one that leaks is soon worth nothing. An
# agent running longer than this gets 401s (give it a longer ``token_ttl_s``).
DEFAULT_TOKEN_TTL_S = 3600.0
ENDPOINTS: contextvars.ContextVar[EndpointSource | None] = contextvars.ContextVar(
    "omium_llm_endpoints", default=None)


def start_run(endpoints: EndpointSource | None,
              run: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
    """``run`` as a task whose agents get their endpoints from ``endpoints``."""
    context = contextvars.copy_context()
    context.run(ENDPOINTS.set, endpoints)
    return asyncio.get_running_loop().create_task(run, context=context)


def service_endpoints(base_url: str, signer: TokenSigner,
                      token_ttl_s: float = DEFAULT_TOKEN_TTL_S) -> AgentEndpoints:
    """Endpoints at a deployment's gateway (``omium serve``), tokens signed with its secret;
    the default model from this process's LLM config."""
    from omium.llm.config import load_config

    return AgentEndpoints(config=load_config, base_url=base_url, signer=signer,
                          token_ttl_s=token_ttl_s)


class AgentEndpoints:
    """``router()`` is the router a local gateway calls (built on first need by the owner);
    ``config()`` gives the default model. With ``base_url`` no gateway is started here and
    ``signer`` must be the deployment's."""

    def __init__(self, *, router: Callable[[], LLMRouter] | None = None,
                 config: Callable[[], LLMConfig] | None = None, base_url: str | None = None,
                 signer: TokenSigner | None = None,
                 token_ttl_s: float = DEFAULT_TOKEN_TTL_S) -> None:
        if base_url is None and router is None:
            raise ValueError("AgentEndpoints: give a gateway base_url or a router to serve")
        if base_url is not None and signer is None:
            raise ValueError("AgentEndpoints: a gateway base_url needs its deployment's signer")
        self._router, self._config = router, config
        self.base_url, self.token_ttl_s = base_url, token_ttl_s
        self._signer = signer
        self._loop = asyncio.get_running_loop()  # where a local gateway will serve
        self._lock = threading.Lock()  # sync agents read their endpoint from their thread
        self._local: LocalGateway | None = None
        self._model: tuple[str | None] | None = None

    @property
    def started(self) -> bool:
        """Whether this process's own gateway was started."""
        return self._local is not None and self._local.started

    def endpoint(self, ctx: AgentContext) -> LLMEndpoint:
        with self._lock:  # one gateway, one router, however many threads ask at once
            url = self.base_url or self._local_gateway().url()
            model = self.default_model()
        assert self._signer is not None  # given with base_url, else made with the gateway
        token = self._signer.mint(ctx.tenant_id, ctx.execution_id, ctx.agent_id, ctx.attempt,
                                  self.token_ttl_s)
        return LLMEndpoint(url, token, model)

    def default_model(self) -> str | None:
        """The first configured backend's model (priority order, local first); None when
        there is none or the config is broken (the gateway then says why)."""
        if self._model is None:
            try:
                config = self._config() if self._config else self._router_now().config
                ordered = config.ordered()
                self._model = (ordered[0].model if ordered else None,)
            except LLMConfigError:
                return None
        return self._model[0]

    def _router_now(self) -> LLMRouter:
        assert self._router is not None
        return self._router()

    def _local_gateway(self) -> LocalGateway:
        if self._local is None:
            from omium.llm.gateway import Gateway
            from omium.llm.gateway_token import TokenSigner, new_secret
            from omium.llm.local_gateway import LocalGateway

            if self._signer is None:
                self._signer = TokenSigner(new_secret())
            self._local = LocalGateway(Gateway(self._router_now, signer=self._signer),
                                       self._loop)
        return self._local

    async def aclose(self) -> None:
        """Stop this process's gateway, if it was started (before the router it calls)."""
        if self._local is not None:
            await self._local.aclose()
