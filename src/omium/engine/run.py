"""Driving one execution to its end: schedule ready nodes, checkpoint, vote, finish.

What to do with a failed node is engine/recovery.py's.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from omium import metrics
from omium.agents.base import Agent
from omium.agents.runtime import REVIEW_REQUESTED, AgentRuntime, Review, ReviewRequested, lend
from omium.coordination.consensus import decide
from omium.coordination.handoff import HandoffProtocol, HandoffResult
from omium.engine.attempts import Sleep, Success, run_with_retries
from omium.engine.failures import Failure
from omium.engine.graph import Node, WorkflowGraph
from omium.engine.recovery import Recovered, Recovery, Rollback, Verdict, answered_reviews
from omium.engine.result import ExecutionResult
from omium.errors import ExecutionStateError, HandoffValidationError
from omium.status import Status
from omium.store.base import ExecutionStore
from omium.store.records import (
    CheckpointRecord,
    ConsensusRecord,
    EventRecord,
    ExecutionRecord,
    HandoffRecord,
)
from omium.workflow.model import AgentSpec

if TYPE_CHECKING:
    from omium.llm.router import LLMRouter

OnEvent = Callable[[str, str | None, dict[str, Any]], None]


@dataclass
class VotePause:
    """A vote did not meet its rule: the execution waits for a human decision."""


class Run:
    """State of one drive of one execution (a resume is a new drive over the checkpoints)."""

    def __init__(self, store: ExecutionStore, graph: WorkflowGraph, rec: ExecutionRecord, *,
                 on_event: OnEvent | None = None, sleep: Sleep = asyncio.sleep,
                 llm: LLMRouter | None = None, epoch: int | None = None,
                 gate: Callable[[], Awaitable[None]] | None = None) -> None:
        self.store, self.graph, self.rec = store, graph, rec
        # Awaited before agents start (a run in this process checks for a cancel there).
        self.gate = gate
        self.llm = llm
        # Under a worker's lease every write carries its epoch: once another worker has
        # reclaimed the execution, this run's writes raise StaleLeaseError and land nowhere.
        self.epoch = epoch
        self.on_event = on_event
        self.sleep = sleep
        self.done: dict[str, Any] = {}
        self.failed: dict[str, Failure] = {}
        self.reused: list[str] = []
        # The final update, when the last checkpoint carried it (see _completion).
        self._completed: dict[str, Any] | None = None
        self.votes: dict[str, dict[str, Any]] = {}
        # Agents' own review requests that a human decided (read on resume): lent to them.
        self.reviews: dict[str, Review] = {}
        self.recovery = Recovery(store, graph, rec.id, epoch=epoch, emit=self._emit,
                                 attempts=self._attempts)
        receivers = {n.id: n.agent for n in graph.nodes.values() if n.agent is not None}
        self.handoff = HandoffProtocol(None, timeout_s=graph.workflow.handoff.timeout_s,
                                       receivers=receivers)

    # -- reporting
    def _emit(self, kind: str, agent_id: str | None = None, **data: Any) -> None:
        if self.on_event is not None:
            self.on_event(kind, agent_id, data)

    async def _failed_attempt(self, agent_id: str, attempt: int, kind: str, error: str) -> None:
        metrics.failures_detected.labels(kind).inc()
        await self.store.add_events([EventRecord(
            self.rec.id, "failure_detected", agent_id,
            {"attempt": attempt, "failure_type": kind, "error": error}, time.time())],
            epoch=self.epoch)
        self._emit("agent_failed_attempt", agent_id, attempt=attempt, failure_type=kind,
                   error=error)

    async def _attempts(self, agent: Agent, spec: AgentSpec, agent_id: str, data: Any
                        ) -> Success | Failure:
        """All attempts of one agent (a node's, or a fallback's in its place), with the
        store and its review decision lent to it (omium.agents.runtime)."""
        with lend(AgentRuntime(self.store, self.epoch, self.reviews.get(agent_id))):
            outcome = await run_with_retries(
                agent, spec, data, execution_id=self.rec.id, agent_id=agent_id,
                tenant_id=self.rec.tenant_id, workflow_name=self.rec.workflow_name,
                on_failed_attempt=self._failed_attempt, sleep=self.sleep, llm=self.llm)
        if isinstance(outcome, Success) and isinstance(outcome.output, ReviewRequested):
            return await self._review_requested(agent_id, outcome.output, outcome.attempt)
        return outcome

    async def _review_requested(self, agent_id: str, request: ReviewRequested, attempt: int
                                ) -> Failure:
        """The agent asked for a human: its request is an event (what the reviewer is
        asked); the execution pauses as for a failure under ``manual_review``."""
        await self.store.add_events([EventRecord(
            self.rec.id, "review_requested", agent_id,
            {"prompt": request.prompt, "key": request.key, "attempt": attempt}, time.time())],
            epoch=self.epoch)
        return Failure(agent_id, REVIEW_REQUESTED, str(request), attempt, "manual_review")

    # -- the scheduler
    async def drive(self, *, fresh: bool = False) -> ExecutionResult:
        """Run what is not checkpointed yet; ``fresh`` (just created) skips reading them."""
        for cp in [] if fresh else await self.store.get_checkpoints(self.rec.id):
            if cp.agent_id in self.graph.nodes:
                self.done[cp.agent_id] = cp.output
                self.reused.append(cp.agent_id)
                if self.graph.nodes[cp.agent_id].is_vote:
                    self.votes[cp.agent_id] = cp.output
                self._emit("agent_reused", cp.agent_id, attempts=cp.attempt,
                           duration_s=cp.finished_at - cp.started_at, served_by=cp.served_by)
        if not fresh:
            await self.recovery.resume()
            self.reviews = answered_reviews(await self.store.get_events(self.rec.id))
        pending = [n for n in self.graph.nodes if n not in self.done]
        running: dict[asyncio.Task[Any], str] = {}
        started = time.perf_counter()
        active = metrics.active_executions.labels(self.graph.framework)
        active.inc()
        stop: Failure | None = None
        pause: Failure | VotePause | None = None
        try:
            while True:
                if stop is None and pause is None:
                    ready = [n for n in pending if self._ready(self.graph.nodes[n])]
                    if ready and self.gate is not None:
                        await self.gate()
                    for node_id in ready:
                        pending.remove(node_id)
                        node = self.graph.nodes[node_id]
                        coro = self._vote(node) if node.is_vote else self._agent(node)
                        running[asyncio.ensure_future(coro)] = node_id
                if not running:
                    break
                finished, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for task in finished:
                    node_id = running.pop(task)
                    outcome = task.result()
                    if isinstance(outcome, VotePause):
                        pause = outcome
                    elif isinstance(outcome, Failure):
                        action = await self._on_failure(node_id, outcome, pending)
                        if action == "stop":
                            stop = stop or outcome
                        elif action == "pause":
                            pause = pause or outcome
                    else:
                        self.done[node_id] = outcome
        finally:
            active.dec()
            for task in running:  # only on cancellation: do not leave agents running
                task.cancel()
        result = await self._finish(stop, pause)
        metrics.execution_duration.labels(self.graph.framework, result.status).observe(
            time.perf_counter() - started)
        return result

    def _ready(self, node: Node) -> bool:
        # A vote counts a failed voter as an abstention; any other node needs all inputs.
        return all(d in self.done or (node.is_vote and d in self.failed) for d in node.deps)

    async def _on_failure(self, node_id: str, failure: Failure, pending: list[str]) -> Verdict:
        self.failed[node_id] = failure
        self._emit("agent_failed", node_id, failure_type=failure.failure_type,
                   error=failure.error, attempts=failure.attempts)
        action = await self.recovery.on_failure(node_id, failure, self.done)
        if not isinstance(action, Rollback):
            return action
        del self.failed[node_id]
        for dep in action.redo:
            del self.done[dep]
        pending.extend([*action.redo, node_id])
        return "continue"

    # -- one agent node
    def _inputs_for(self, node: Node) -> Any:
        if not node.deps:
            return self.rec.inputs
        if len(node.deps) == 1:
            return self.done[node.deps[0]]
        return {d: self.done[d] for d in node.deps}

    async def _agent(self, node: Node) -> Any:
        spec, agent = node.spec, node.agent
        assert spec is not None and agent is not None
        data = self._inputs_for(node)
        handoffs: list[HandoffRecord] = []
        if node.deps:
            source = ",".join(node.deps)
            try:
                result = await self.handoff.initiate_handoff(
                    self.rec.id, source, [node.id], data, spec.input_schema, persist=False)
            except HandoffValidationError as err:
                failed = HandoffProtocol.record(self.rec.id, source, [node.id], HandoffResult(
                    "failed", reason="validation_error", error=str(err)))
                await self.store.add_handoffs([failed], epoch=self.epoch)
                return Failure(node.id, "validation_error", str(err), 0, spec.strategy)
            record = HandoffProtocol.record(self.rec.id, source, [node.id], result)
            if not result.ok:
                await self.store.add_handoffs([record], epoch=self.epoch)
                return Failure(node.id, "no_consensus", result.error or "handoff refused", 0,
                               spec.strategy)
            self._emit("handoff", node.id, source=source, latency_ms=result.latency_ms)
            metrics.handoff_latency.observe(result.latency_ms / 1000)
            handoffs.append(record)
            data = result.delivered[node.id]
        # A handoff that failed validation is not retried: the same data would fail again.
        self._emit("agent_started", node.id)
        outcome = await self._attempts(agent, spec, node.id, data)
        if isinstance(outcome, Failure) and outcome.failure_type == REVIEW_REQUESTED:
            return outcome  # the agent's own pause: no fallback stands in for a human
        settled = await self.recovery.settle(node, outcome, data)
        if isinstance(settled, Failure):
            return settled
        return await self._checkpoint(node, settled, handoffs)

    async def _checkpoint(self, node: Node, recovered: Recovered,
                          handoffs: list[HandoffRecord]) -> Any:
        ok, served_by = recovered.ok, recovered.served_by
        cp = CheckpointRecord(self.rec.id, node.id, node.index, ok.attempt, ok.output,
                              ok.started_at, ok.finished_at, served_by)
        finish = self._completion(node.id, ok.output)
        try:
            saved = await self.store.save_checkpoint(cp, handoffs, recovered.events,
                                                     epoch=self.epoch, finish=finish)
        except ExecutionStateError:  # cancelled meanwhile: keep the output, leave the status
            finish = None
            saved = await self.store.save_checkpoint(cp, handoffs, recovered.events,
                                                     epoch=self.epoch)
        if not saved:
            # Someone else (a concurrent resume) checkpointed this agent first: theirs wins.
            return await self._existing_output(node.id)
        self._completed = finish
        for ev in recovered.events:
            metrics.recovery_success.labels(ev.data["strategy"]).inc()
        self._emit("agent_finished", node.id, attempts=ok.attempt, served_by=served_by,
                   duration_s=ok.finished_at - ok.started_at)
        return ok.output

    async def _existing_output(self, node_id: str) -> Any:
        for cp in await self.store.get_checkpoints(self.rec.id):
            if cp.agent_id == node_id:
                return cp.output
        raise RuntimeError(f"checkpoint conflict for {node_id} but none found")

    # -- one vote node
    async def _vote(self, node: Node) -> Any:
        outputs = {d: self.done[d] for d in node.deps if d in self.done}
        abstain = {d: f"{f.failure_type}: {f.error}" for d, f in self.failed.items()
                   if d in node.deps}
        result = decide(outputs, abstain, node.consensus)
        self._emit("consensus", node.id, **result.to_dict())
        metrics.consensus_outcomes.labels(result.outcome).inc()
        rec = ConsensusRecord(self.rec.id, node.id, result.to_dict(), result.outcome,
                              result.decision, result.agreement_level, time.time())
        if result.outcome == "approved":
            now = time.time()
            cp = CheckpointRecord(self.rec.id, node.id, node.index, 1, result.to_dict(), now,
                                  now)
            if not await self.store.save_checkpoint(cp, consensus=rec, epoch=self.epoch):
                return await self._existing_output(node.id)
            self.votes[node.id] = result.to_dict()
            return result.to_dict()
        await self.store.save_consensus(rec, epoch=self.epoch)
        self.votes[node.id] = result.to_dict()
        if result.outcome == "manual_review":
            return VotePause()
        return Failure(node.id, "no_consensus",
                       f"agreement {result.agreement_level:.2f} does not meet: {result.rule}")

    # -- the end
    def _completion(self, node_id: str, output: Any) -> dict[str, Any] | None:
        """The final update if ``node_id`` is the last node and every other one succeeded
        (then its checkpoint completes the execution in the same transaction: one write
        fewer per execution), else None."""
        if self.failed or len(self.done) != len(self.graph.nodes) - 1 or node_id in self.done:
            return None
        summary = self._summary({**self.done, node_id: output})
        fields: dict[str, Any] = {"status": Status.COMPLETED, "decision": summary["decision"],
                                  "result": summary, "finished_at": time.time(),
                                  "failed_agent": None, "failure_type": None, "error": None}
        if self.epoch is not None:
            fields.update(lease_owner=None, lease_expires_at=None)
        return fields

    def _summary(self, done: dict[str, Any] | None = None) -> dict[str, Any]:
        done = self.done if done is None else done
        results = {k: v for k, v in done.items() if self.graph.nodes[k].agent is not None
                   or self.graph.nodes[k].spec is not None}
        sinks = [n.id for n in self.graph.sinks if n.id in done]
        output = done[sinks[0]] if len(sinks) == 1 else {s: done[s] for s in sinks}
        consensus = list(self.votes.values())[-1] if self.votes else None
        if consensus is not None and any(self.graph.nodes[s].is_vote for s in sinks):
            decision = consensus.get("decision")
        elif isinstance(output, dict) and "decision" in output:
            decision = output["decision"]
        else:
            decision = consensus.get("decision") if consensus else None
        return {"results": results, "consensus": consensus, "decision": decision,
                "output": output if sinks else None, "reused": self.reused}

    async def _finish(self, stop: Failure | None, pause: Failure | VotePause | None
                      ) -> ExecutionResult:
        # The last checkpoint may have written the summary with the final status already.
        summary = self._completed["result"] if self._completed is not None else self._summary()
        fields: dict[str, Any] = {"failed_agent": None, "failure_type": None, "error": None}
        if stop is not None:
            status = Status.FAILED
            fields.update(failed_agent=stop.agent_id, failure_type=stop.failure_type,
                          error=stop.error)
        elif isinstance(pause, Failure):
            status = Status.AWAITING_REVIEW
            fields.update(failed_agent=pause.agent_id, failure_type=pause.failure_type,
                          error=pause.error)
        elif isinstance(pause, VotePause):
            status = Status.AWAITING_REVIEW
            summary["decision"] = None
        else:
            status = Status.COMPLETED
        finished = time.time() if status in (Status.COMPLETED, Status.FAILED) else None
        if self.epoch is not None:  # done with the lease: nothing left for a worker to claim
            fields.update(lease_owner=None, lease_expires_at=None)
        written = self._completed is not None and status == Status.COMPLETED  # by the last cp
        # Only from running: an execution cancelled meanwhile (a CLI run has no lease to
        # fence it) stays cancelled; its outputs are still saved as checkpoints.
        if not written and not await self.store.update_execution(
                self.rec.id, status=status, epoch=self.epoch, expect_status=[Status.RUNNING],
                decision=summary["decision"], result=summary, finished_at=finished, **fields):
            current = await self.store.get_execution(self.rec.id)
            status = current.status if current is not None else status
        self._emit("execution_finished", None, status=status)
        return ExecutionResult(self.rec.id, status, summary["results"], summary["consensus"],
                               summary["decision"], summary["output"], reused=self.reused,
                               failed_agent=fields["failed_agent"],
                               failure_type=fields["failure_type"], error=fields["error"])
