"""What a run does with a failed node: its strategy's recovery and the events that record it.

A node's attempts are retried first (engine/attempts.py). What then: ``fallback`` runs its
standby agent in the node's place; ``rollback`` runs the node's upstream again, up to
``max_rollbacks`` times over all resumes of the execution; ``manual_review`` pauses the
execution for a human; anything else stops it unless only votes wait on the node. An agent
may ask for a review itself (``omium.agents.runtime``): it pauses the same way, and is run
again with the decision.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Container, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from omium.agents.base import Agent
from omium.agents.runtime import Review
from omium.engine.attempts import Success
from omium.engine.failures import Failure
from omium.engine.graph import Node, WorkflowGraph
from omium.store.base import ExecutionStore
from omium.store.records import EventRecord
from omium.workflow.model import AgentSpec

# One agent's attempts, as the run makes them: (agent, spec, agent id, inputs).
Attempts = Callable[[Agent, AgentSpec, str, Any], Awaitable[Success | Failure]]
# What the scheduler does after a failure that does not roll back.
Verdict = Literal["continue", "stop", "pause"]


class Emit(Protocol):
    """The run's progress report (``on_event``), for what recovery does."""

    def __call__(self, kind: str, agent_id: str | None = None, /, **data: Any) -> None: ...


@dataclass
class Rollback:
    """Run these upstream nodes again (their checkpoints are superseded), then the node."""

    redo: list[str]


@dataclass
class Recovered:
    """A node's output after its recovery, and the events its checkpoint is saved with."""

    ok: Success
    served_by: str | None = None  # the fallback agent that stood in for the node
    events: list[EventRecord] = field(default_factory=list)  # recovery_succeeded


def answered_reviews(events: Sequence[EventRecord]) -> dict[str, Review]:
    """Agents' own review requests that a human has decided since: agent id -> the review.

    A ``review`` event decides every request made before it (a parallel step may pause on
    several agents at once; one human decision resumes the execution). Only each agent's
    latest request counts: a request made again after a decision waits for the next one."""
    asked: dict[str, EventRecord] = {}
    decided: dict[str, Review] = {}
    for ev in events:
        if ev.type == "review_requested" and ev.agent_id is not None:
            asked[ev.agent_id] = ev
            decided.pop(ev.agent_id, None)
        elif ev.type == "review":
            for agent_id, req in asked.items():
                decided[agent_id] = Review(ev.data.get("decision", ""), ev.data.get("reviewer"),
                                           req.data.get("prompt"), req.data.get("key"))
            asked = {}
    return decided


class Recovery:
    """The recovery state of one drive of one execution: the rollbacks made so far."""

    def __init__(self, store: ExecutionStore, graph: WorkflowGraph, execution_id: str, *,
                 epoch: int | None, emit: Emit, attempts: Attempts) -> None:
        self.store, self.graph, self.execution_id = store, graph, execution_id
        self.epoch = epoch  # every write carries the run's lease epoch, as the run's own do
        self.emit = emit
        self.attempts = attempts
        self.rollbacks: dict[str, int] = {}

    def _event(self, kind: str, agent_id: str, **data: Any) -> EventRecord:
        return EventRecord(self.execution_id, kind, agent_id, data, time.time())

    async def _record(self, kind: str, agent_id: str, **data: Any) -> None:
        await self.store.add_events([self._event(kind, agent_id, **data)], epoch=self.epoch)

    async def resume(self) -> None:
        """The rollback budget spans resumes: count the rollbacks already made."""
        if not any(n.spec is not None and n.spec.strategy == "rollback"
                   for n in self.graph.nodes.values()):
            return
        for ev in await self.store.get_events(self.execution_id):
            if ev.type == "rollback" and ev.agent_id is not None:
                self.rollbacks[ev.agent_id] = self.rollbacks.get(ev.agent_id, 0) + 1

    # -- after a node's attempts
    async def settle(self, node: Node, outcome: Success | Failure, data: Any
                     ) -> Recovered | Failure:
        """A failure gets the node's fallback, if it has one; a success notes what recovered
        it (retries, the fallback, a rollback)."""
        spec = node.spec
        assert spec is not None
        if isinstance(outcome, Success):
            recovered = Recovered(outcome)
            if outcome.attempt > 1:
                recovered.events.append(self._event("recovery_succeeded", node.id,
                                                    strategy="retry", attempts=outcome.attempt))
        else:
            outcome.strategy = spec.strategy
            if spec.strategy != "fallback" or spec.fallback is None:
                return outcome
            # The fallback's own failure keeps strategy "retry": it is not recovered again.
            standby = await self._fallback(node, spec.fallback, data)
            if isinstance(standby, Failure):
                await self._record("recovery_failed", node.id, strategy="fallback")
                return standby
            recovered = Recovered(standby, spec.fallback, [self._event(
                "recovery_succeeded", node.id, strategy="fallback", served_by=spec.fallback)])
        if self.rollbacks.get(node.id):
            recovered.events.append(self._event("recovery_succeeded", node.id,
                                                strategy="rollback"))
        return recovered

    async def _fallback(self, node: Node, fallback_id: str, data: Any) -> Success | Failure:
        agent = self.graph.fallbacks[fallback_id]
        spec = agent.spec
        if spec.output_schema is None and node.spec is not None:
            # The fallback stands in for the node: its output must fit what the node promised.
            spec = spec.model_copy(update={"output_schema": node.spec.output_schema})
        self.emit("agent_fallback", node.id, fallback=fallback_id)
        outcome = await self.attempts(agent, spec, fallback_id, data)
        if isinstance(outcome, Failure):
            outcome.agent_id = node.id
            outcome.error = f"fallback {fallback_id} failed too: {outcome.error}"
        return outcome

    # -- after a node failed for good
    async def on_failure(self, node_id: str, failure: Failure, done: Container[str]
                         ) -> Verdict | Rollback:
        """Roll back while the node's budget lasts; else pause for review, or stop the
        execution when the failure is fatal."""
        node = self.graph.nodes[node_id]
        if failure.strategy == "rollback":
            used = self.rollbacks.get(node_id, 0)
            assert node.spec is not None
            if used < node.spec.max_rollbacks:
                self.rollbacks[node_id] = used + 1
                redo = [d for d in node.deps if d in done]
                await self.store.supersede_checkpoints(self.execution_id, redo, [self._event(
                    "rollback", node_id, upstream=redo, failure_type=failure.failure_type,
                    rollback=used + 1)], epoch=self.epoch)
                self.emit("agent_rollback", node_id, upstream=redo)
                return Rollback(redo)
            await self._record("recovery_failed", node_id, strategy="rollback")
        if failure.strategy == "manual_review":
            await self._record("paused_for_review", node_id, failure_type=failure.failure_type)
            return "pause"
        return "stop" if self.graph.is_fatal(node_id) else "continue"
