"""The one interface every agent kind implements, and the context each call gets."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar

from omium.agents._imports import declared_refs, resolve_ref
from omium.errors import AgentCrashedError, FieldProblem
from omium.workflow.model import AgentSpec

if TYPE_CHECKING:
    from omium.llm.router import LLMRouter

T = TypeVar("T")


@dataclass(frozen=True)
class LLMEndpoint:
    """An OpenAI-compatible endpoint for one agent's own LLM calls."""

    base_url: str  # ends in /v1, as OpenAI clients expect
    api_key: str
    model: str | None


class EndpointSource(Protocol):
    """Makes an agent's endpoint when the agent first reads one (see ``AgentContext``)."""

    def endpoint(self, ctx: AgentContext) -> LLMEndpoint: ...


class _FromEndpoint:
    """A context field that, when not given, is read from ``ctx.llm_endpoint`` on first use.

    Reading ``ctx.llm_base_url`` is what starts a CLI run's in-process gateway, so python
    agents that never read it cost nothing; the fields stay plain constructor arguments
    (a test or an adapter may pass fixed ones). Thread-safe enough: two threads reading at
    once may each mint a token, both valid."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, ctx: AgentContext | None, owner: type | None = None) -> Any:
        if ctx is None:
            return self  # the dataclass machinery asks the class for its default
        value = ctx.__dict__.get(self.name)
        if value is None and ctx.llm_endpoint is not None:
            resolved = ctx.__dict__.get("_llm_resolved")
            if resolved is None:
                resolved = ctx.__dict__["_llm_resolved"] = ctx.llm_endpoint.endpoint(ctx)
            value = getattr(resolved, self.name.removeprefix("llm_"))
        return value

    def __set__(self, ctx: AgentContext, value: Any) -> None:
        ctx.__dict__[self.name] = None if value is self else value

    def __repr__(self) -> str:  # how the default shows in signatures and help()
        return "None"


@dataclass(frozen=True)
class AgentContext:
    """What an agent knows about the call it serves.

    ``idempotency_key`` is the same for every attempt and every resume of this agent in this
    execution: an agent with outside effects (a payment, an e-mail) passes it on so the effect
    happens once even when the agent is re-run after a crash.

    ``llm_base_url``, ``llm_api_key`` and ``llm_model``: an OpenAI-compatible endpoint for
    this agent's own LLM calls (framework agents build their client with them), routed by
    Omium's router and billed to this execution's tenant with the execution and agent on each
    usage record. The key is valid only for this execution and agent, and only for a while.
    Made on first read by ``llm_endpoint`` (the executor's or worker's); None where there is
    none. Not in ``repr``: the key is a credential.
    """

    execution_id: str
    agent_id: str
    attempt: int
    tenant_id: str = "local"
    workflow_name: str = ""
    llm: LLMRouter | None = None  # the executor's router, for agents that call LLMs
    llm_base_url: str | None = field(default=_FromEndpoint(), repr=False, compare=False)
    llm_api_key: str | None = field(default=_FromEndpoint(), repr=False, compare=False)
    # The model to ask for: the definition's ``model``, else the first configured one.
    llm_model: str | None = field(default=_FromEndpoint(), repr=False, compare=False)
    llm_endpoint: EndpointSource | None = field(default=None, repr=False, compare=False)

    @property
    def idempotency_key(self) -> str:
        return f"{self.execution_id}:{self.agent_id}"


@dataclass(frozen=True)
class Ack:
    """A receiver's answer to a handoff: accepted, or refused with a reason."""

    accepted: bool
    reason: str | None = None

    @classmethod
    def coerce(cls, value: Any) -> Ack:
        """Accept hooks may return Ack, bool, or (bool, reason)."""
        if isinstance(value, Ack):
            return value
        if isinstance(value, tuple) and len(value) == 2:
            return cls(bool(value[0]), None if value[1] is None else str(value[1]))
        return cls(bool(value))


ACCEPT = Ack(True)


class Agent(ABC):
    """An agent kind ("framework"). Subclasses are registered under the ``omium.agents``
    entry-point group so other packages can add their own."""

    framework: ClassVar[str]
    # The ``definition`` keys that name code ("module:name"): every one is checked by
    # omium.agents.refs, against OMIUM_ALLOWED_MODULES when a client sent it. A kind that
    # imports code from a key it does not declare here opens a hole.
    reference_fields: ClassVar[tuple[str, ...]] = ()

    def __init__(self, spec: AgentSpec, base_dir: str | None = None) -> None:
        self.spec = spec
        self.base_dir = base_dir

    @classmethod
    def check(cls, spec: AgentSpec, base_dir: str | None) -> list[FieldProblem]:
        """Problems with ``spec.definition`` found before anything runs (paths relative to it).

        By default: every declared reference field resolves, under the operator's rules."""
        problems = []
        for key in cls.reference_fields:
            for path, ref in declared_refs(spec.definition, key):
                try:
                    resolve_ref(ref, base_dir)
                except ValueError as err:
                    problems.append(FieldProblem(path, str(err)))
        return problems

    @abstractmethod
    async def run(self, inputs: Any, ctx: AgentContext) -> Any:
        """Do the agent's work and return its (JSON-serialisable) output."""

    @property
    def has_accept_hook(self) -> bool:
        """False when ``accept`` always says yes, so handoffs can skip asking (hot path)."""
        return type(self).accept is not Agent.accept

    async def accept(self, data: Any, ctx: AgentContext) -> Ack:
        """Acknowledge a handoff of valid data; override to refuse with a reason."""
        return ACCEPT


async def contained(call: Awaitable[T]) -> T:
    """Await agent code so that nothing it raises can end the process.

    asyncio re-raises SystemExit and KeyboardInterrupt out of the event loop (ending
    ``omium serve``) and lets other BaseExceptions escape ``except Exception``; here they become
    an ``AgentCrashedError``, the agent's failure. A CancelledError passes only when this task
    really is being cancelled: one the agent raised on its own is its failure too."""
    try:
        return await call
    except Exception:
        raise
    except asyncio.CancelledError as err:
        task = asyncio.current_task()
        if task is None or task.cancelling():
            raise
        raise AgentCrashedError(err) from err
    except BaseException as err:
        raise AgentCrashedError(err) from err
