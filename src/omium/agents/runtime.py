"""What the engine lends one agent call besides its ``AgentContext``, and how an agent asks
a human to decide.

The run sets it for the duration of an agent's attempts (a context variable of the task
that runs that agent, so agents running side by side each see their own):

* ``store``: the execution's store, for agents that checkpoint inside themselves (a
  LangGraph graph's super-steps), with the lease ``epoch`` that fences their writes;
* ``review``: when the agent asked for a review (raised ``ReviewRequested``) and a human
  has decided it (``omium review ID --decision approve|reject``), that decision: the agent
  is run again and picks up where it asked.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from omium.store.base import ExecutionStore

# The failure type an execution paused at an agent's own request carries.
REVIEW_REQUESTED = "review_requested"


class ReviewRequested(Exception):
    """Raised by an agent to pause the execution for a human (``awaiting_review``).

    ``prompt``: what the reviewer is asked (JSON). ``key``: an opaque token the agent gets
    back with the decision (``Review.key``), so it can tell that the decision answers this
    very request. Not a failure: no retry, no fallback."""

    def __init__(self, prompt: Any, key: str | None = None) -> None:
        super().__init__(prompt)
        self.prompt, self.key = prompt, key

    def __str__(self) -> str:
        text = self.prompt if isinstance(self.prompt, str) else json.dumps(self.prompt,
                                                                           default=str)
        return f"review requested: {text[:500]}"


@dataclass(frozen=True)
class Review:
    """A human's decision on an agent's review request."""

    decision: str
    reviewer: str | None
    prompt: Any
    key: str | None


@dataclass(frozen=True)
class AgentRuntime:
    store: ExecutionStore
    epoch: int | None = None
    review: Review | None = None


_current: ContextVar[AgentRuntime | None] = ContextVar("omium_agent_runtime", default=None)


def current_runtime() -> AgentRuntime | None:
    """What the engine lent this agent call; None outside an Omium run."""
    return _current.get()


@contextmanager
def lend(runtime: AgentRuntime) -> Iterator[None]:
    token = _current.set(runtime)
    try:
        yield
    finally:
        _current.reset(token)
