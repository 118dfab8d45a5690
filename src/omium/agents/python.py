"""``framework: python``: an agent that is a plain Python function, sync or async."""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from typing import Any

from omium.agents._imports import import_ref
from omium.agents._params import positional
from omium.agents._threads import AgentThreads
from omium.agents.base import Ack, Agent, AgentContext
from omium.errors import AgentCrashedError, FieldProblem
from omium.workflow.model import AgentSpec

# asyncio's default pool has min(32, cores + 4) threads: 6 here, which would cap a parallel
# step of sync agents at 6. Agents mostly wait on I/O (a blocking LLM or HTTP call), and a
# worker runs up to 1,000 executions at once, so sync agents get a pool of their own as wide
# as that: OMIUM_AGENT_THREADS (default 1,024) threads at most, started only as needed (an
# idle thread is reused first), each a few tens of KB resident.
THREADS_ENV = "OMIUM_AGENT_THREADS"
DEFAULT_THREADS = 1024
_pool: AgentThreads | None = None


def agent_threads() -> int:
    """The sync-agent pool's size: ``OMIUM_AGENT_THREADS``, else ``DEFAULT_THREADS``."""
    value = os.environ.get(THREADS_ENV, "").strip()
    if not value:
        return DEFAULT_THREADS
    try:
        number = int(value)
    except ValueError:
        raise ValueError(f"{THREADS_ENV} must be an integer, got {value!r}") from None
    if number < 1:
        raise ValueError(f"{THREADS_ENV} must be >= 1, got {number}")
    return number


def _threads() -> AgentThreads:
    global _pool
    if _pool is None:  # sized on first use, so the environment of the process decides
        _pool = AgentThreads(agent_threads())
    return _pool


def _takes_context(fn: Callable[..., Any]) -> bool:
    params = positional(fn)
    return params is None or params[0] >= 2 or params[1]


def _in_thread(fn: Callable[..., Any], *args: Any) -> Any:
    """Run a sync agent in its pool thread. SystemExit and friends become the agent's failure
    here, and so does StopIteration: an asyncio future refuses it and the call would hang."""
    try:
        return fn(*args)
    except StopIteration as err:
        raise AgentCrashedError(err) from err
    except Exception:
        raise
    except BaseException as err:  # no real cancellation can reach a worker thread
        raise AgentCrashedError(err) from err


class PythonAgent(Agent):
    """``definition: {callable: "pkg.mod:fn", accept?: "pkg.mod:hook"}``.

    ``fn(inputs)`` or ``fn(inputs, ctx)``; async functions are awaited, sync ones run in a
    thread so they never block the other agents of a parallel step. ``accept(data, ctx)``
    returns bool, (bool, reason) or Ack.
    """

    framework = "python"
    reference_fields = ("callable", "accept")

    def __init__(self, spec: AgentSpec, base_dir: str | None = None) -> None:
        super().__init__(spec, base_dir)
        self.fn = import_ref(spec.definition["callable"], base_dir)
        self._with_ctx = _takes_context(self.fn)
        self._is_async = inspect.iscoroutinefunction(self.fn)
        hook = spec.definition.get("accept")
        self.accept_hook = import_ref(hook, base_dir) if hook else None

    @classmethod
    def check(cls, spec: AgentSpec, base_dir: str | None) -> list[FieldProblem]:
        problems = []
        if "callable" not in spec.definition:
            return [FieldProblem("definition.callable", "required for framework: python")]
        unknown = set(spec.definition) - set(cls.reference_fields)
        if unknown:
            problems.append(FieldProblem("definition", f"unknown keys {sorted(unknown)}"))
        return problems + super().check(spec, base_dir)  # the references themselves

    async def run(self, inputs: Any, ctx: AgentContext) -> Any:
        args = (inputs, ctx) if self._with_ctx else (inputs,)
        if self._is_async:
            return await self.fn(*args)
        return await _threads().run(_in_thread, self.fn, *args)

    @property
    def has_accept_hook(self) -> bool:
        return self.accept_hook is not None

    async def accept(self, data: Any, ctx: AgentContext) -> Ack:
        if self.accept_hook is None:
            return await super().accept(data, ctx)
        result = self.accept_hook(data, ctx)
        if inspect.isawaitable(result):
            result = await result
        return Ack.coerce(result)
