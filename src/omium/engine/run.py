"""Driving one execution to its end: schedule ready nodes, checkpoint, recover, vote."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from omium import metrics
from omium.billing.money import nano_to_dollars
from omium.coordination.consensus import ConsensusResult, decide
from omium.coordination.handoff import HandoffProtocol, HandoffRecord, HandoffResult
from omium.engine.attempts import Sleep, Success, run_with_retries
from omium.engine.failures import Failure
from omium.engine.graph import Node, WorkflowGraph
from omium.engine.result import ExecutionResult
from omium.errors import HandoffValidationError
from omium.store.base import Store
from omium.store.records import (
    AWAITING_REVIEW,
    COMPLETED,
    FAILED,
    RUNNING,
    CheckpointRecord,
    ConsensusRecord,
    EventRecord,
    ExecutionRecord,
)

if TYPE_CHECKING:
    from omium.llm.router import LLMRouter

OnEvent = Callable[[str, str | None, dict[str, Any]], None]


@dataclass
class VotePause:
    """A vote did not meet its rule: the execution waits for a human decision."""

    result: ConsensusResult


class Run:
    """State of one drive of one execution (a resume is a new drive over the checkpoints)."""

    def __init__(self, store: Store, plan: WorkflowGraph, rec: ExecutionRecord, *,
                 on_event: OnEvent | None = None, sleep: Sleep = asyncio.sleep,
                 llm: LLMRouter | None = None, epoch: int | None = None) -> None:
        self.store, self.plan, self.rec = store, plan, rec
        self.llm = llm
        # Under a worker's lease every write carries its epoch: once another worker has
        # reclaimed the execution, this run's writes raise StaleLeaseError and land nowhere.
        self.epoch = epoch
        self.on_event = on_event
        self.sleep = sleep
        self.done: dict[str, Any] = {}
        self.failed: dict[str, Failure] = {}
        self.reused: list[str] = []
        self.votes: dict[str, dict[str, Any]] = {}
        self.rollbacks: dict[str, int] = {}
        receivers = {n.id: n.agent for n in plan.nodes.values() if n.agent is not None}
        self.handoff = HandoffProtocol(None, timeout_s=plan.workflow.handoff.timeout_s,
                                       receivers=receivers)

    # -- reporting
    def _emit(self, kind: str, agent_id: str | None = None, **data: Any) -> None:
        if self.on_event is not None:
            self.on_event(kind, agent_id, data)

    def _event(self, kind: str, agent_id: str | None, **data: Any) -> EventRecord:
        return EventRecord(self.rec.id, kind, agent_id, data, time.time())

    async def _failed_attempt(self, agent_id: str, attempt: int, kind: str, error: str) -> None:
        metrics.failures_detected.labels(kind).inc()
        await self.store.add_events([self._event("failure_detected", agent_id, attempt=attempt,
                                                 failure_type=kind, error=error)],
                                    epoch=self.epoch)
        self._emit("agent_failed_attempt", agent_id, attempt=attempt, failure_type=kind,
                   error=error)

    # -- the scheduler
    async def drive(self, *, fresh: bool = False) -> ExecutionResult:
        """Run what is not checkpointed yet; ``fresh`` (just created) skips reading them."""
        for cp in [] if fresh else await self.store.get_checkpoints(self.rec.id):
            if cp.agent_id in self.plan.nodes:
                self.done[cp.agent_id] = cp.output
                self.reused.append(cp.agent_id)
                if self.plan.nodes[cp.agent_id].is_vote:
                    self.votes[cp.agent_id] = cp.output
                self._emit("agent_reused", cp.agent_id, attempts=cp.attempt,
                           duration_s=cp.finished_at - cp.started_at, served_by=cp.served_by)
        if not fresh and any(n.spec is not None and n.spec.strategy == "rollback"
                             for n in self.plan.nodes.values()):
            # The rollback budget spans resumes: count the rollbacks already made.
            for ev in await self.store.get_events(self.rec.id):
                if ev.type == "rollback" and ev.agent_id is not None:
                    self.rollbacks[ev.agent_id] = self.rollbacks.get(ev.agent_id, 0) + 1
        pending = [n for n in self.plan.nodes if n not in self.done]
        running: dict[asyncio.Task[Any], str] = {}
        started = time.perf_counter()
        active = metrics.active_executions.labels(self.framework)
        active.inc()
        stop: Failure | None = None
        pause: Failure | VotePause | None = None
        try:
            while True:
                if stop is None and pause is None:
                    for node_id in [n for n in pending if self._ready(self.plan.nodes[n])]:
                        pending.remove(node_id)
                        node = self.plan.nodes[node_id]
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
        metrics.execution_duration.labels(self.framework, result.status).observe(
            time.perf_counter() - started)
        return result

    @property
    def framework(self) -> str:
        kinds = {a.framework for a in self.plan.workflow.agents if a.framework != "consensus"}
        return kinds.pop() if len(kinds) == 1 else "mixed"

    def _ready(self, node: Node) -> bool:
        # A vote counts a failed voter as an abstention; any other node needs all inputs.
        return all(d in self.done or (node.is_vote and d in self.failed) for d in node.deps)

    async def _on_failure(self, node_id: str, failure: Failure, pending: list[str]) -> str:
        self.failed[node_id] = failure
        self._emit("agent_failed", node_id, failure_type=failure.failure_type,
                   error=failure.error, attempts=failure.attempts)
        node = self.plan.nodes[node_id]
        if failure.strategy == "rollback":
            used = self.rollbacks.get(node_id, 0)
            assert node.spec is not None
            if used < node.spec.max_rollbacks:
                self.rollbacks[node_id] = used + 1
                del self.failed[node_id]
                redo = [d for d in node.deps if d in self.done]
                await self.store.supersede_checkpoints(self.rec.id, redo, [self._event(
                    "rollback", node_id, upstream=redo, failure_type=failure.failure_type,
                    rollback=used + 1)], epoch=self.epoch)
                for dep in redo:
                    del self.done[dep]
                pending.extend([*redo, node_id])
                self._emit("agent_rollback", node_id, upstream=redo)
                return "continue"
            await self.store.add_events([self._event("recovery_failed", node_id,
                                                     strategy="rollback")], epoch=self.epoch)
        if failure.strategy == "manual_review":
            await self.store.add_events([self._event("paused_for_review", node_id,
                                                     failure_type=failure.failure_type)],
                                        epoch=self.epoch)
            return "pause"
        return "stop" if self.plan.is_fatal(node_id) else "continue"

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
        outcome = await run_with_retries(
            agent, spec, data, execution_id=self.rec.id, agent_id=node.id,
            tenant_id=self.rec.tenant_id, workflow_name=self.rec.workflow_name,
            on_failed_attempt=self._failed_attempt, sleep=self.sleep, llm=self.llm)
        events = []
        served_by = None
        if isinstance(outcome, Failure):
            outcome.strategy = spec.strategy
            if spec.strategy != "fallback" or spec.fallback is None:
                return outcome
            outcome = await self._fallback(node, spec.fallback, data)
            if isinstance(outcome, Failure):
                await self.store.add_events([self._event("recovery_failed", node.id,
                                                         strategy="fallback")],
                                            epoch=self.epoch)
                return outcome
            served_by = spec.fallback
            events.append(self._event("recovery_succeeded", node.id, strategy="fallback",
                                      served_by=served_by))
        elif outcome.attempt > 1:
            events.append(self._event("recovery_succeeded", node.id, strategy="retry",
                                      attempts=outcome.attempt))
        if self.rollbacks.get(node.id):
            events.append(self._event("recovery_succeeded", node.id, strategy="rollback"))
        return await self._checkpoint(node, outcome, handoffs, events, served_by)

    async def _fallback(self, node: Node, fallback_id: str, data: Any) -> Success | Failure:
        agent = self.plan.fallbacks[fallback_id]
        spec = agent.spec
        if spec.output_schema is None and node.spec is not None:
            # The fallback stands in for the node: its output must fit what the node promised.
            spec = spec.model_copy(update={"output_schema": node.spec.output_schema})
        self._emit("agent_fallback", node.id, fallback=fallback_id)
        outcome = await run_with_retries(
            agent, spec, data, execution_id=self.rec.id, agent_id=fallback_id,
            tenant_id=self.rec.tenant_id, workflow_name=self.rec.workflow_name,
            on_failed_attempt=self._failed_attempt, sleep=self.sleep, llm=self.llm)
        if isinstance(outcome, Failure):
            outcome.agent_id = node.id
            outcome.error = f"fallback {fallback_id} failed too: {outcome.error}"
        return outcome

    async def _checkpoint(self, node: Node, ok: Success, handoffs: list[HandoffRecord],
                          events: list[EventRecord], served_by: str | None) -> Any:
        cp = CheckpointRecord(self.rec.id, node.id, node.index, ok.attempt, ok.output,
                              ok.started_at, ok.finished_at, served_by)
        if not await self.store.save_checkpoint(cp, handoffs, events, epoch=self.epoch):
            # Someone else (a concurrent resume) checkpointed this agent first: theirs wins.
            return await self._existing_output(node.id)
        for ev in events:
            if ev.type == "recovery_succeeded":
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
            return VotePause(result)
        return Failure(node.id, "no_consensus",
                       f"agreement {result.agreement_level:.2f} does not meet: {result.rule}")

    # -- the end
    def _summary(self) -> dict[str, Any]:
        results = {k: v for k, v in self.done.items() if self.plan.nodes[k].agent is not None
                   or self.plan.nodes[k].spec is not None}
        sinks = [n.id for n in self.plan.sinks if n.id in self.done]
        output = self.done[sinks[0]] if len(sinks) == 1 else {s: self.done[s] for s in sinks}
        consensus = list(self.votes.values())[-1] if self.votes else None
        if consensus is not None and any(self.plan.nodes[s].is_vote for s in sinks):
            decision = consensus.get("decision")
        elif isinstance(output, dict) and "decision" in output:
            decision = output["decision"]
        else:
            decision = consensus.get("decision") if consensus else None
        return {"results": results, "consensus": consensus, "decision": decision,
                "output": output if sinks else None, "reused": self.reused}

    async def _finish(self, stop: Failure | None, pause: Failure | VotePause | None
                      ) -> ExecutionResult:
        summary = self._summary()
        fields: dict[str, Any] = {"failed_agent": None, "failure_type": None, "error": None}
        if stop is not None:
            status = FAILED
            fields.update(failed_agent=stop.agent_id, failure_type=stop.failure_type,
                          error=stop.error)
        elif isinstance(pause, Failure):
            status = AWAITING_REVIEW
            fields.update(failed_agent=pause.agent_id, failure_type=pause.failure_type,
                          error=pause.error)
        elif isinstance(pause, VotePause):
            status = AWAITING_REVIEW
            summary["decision"] = None
        else:
            status = COMPLETED
        finished = time.time() if status in (COMPLETED, FAILED) else None
        if self.epoch is not None:  # done with the lease: nothing left for a worker to claim
            fields.update(lease_owner=None, lease_expires_at=None)
        # Only from running: an execution cancelled meanwhile (a CLI run has no lease to
        # fence it) stays cancelled; its outputs are still saved as checkpoints.
        if not await self.store.update_execution(
                self.rec.id, status=status, epoch=self.epoch, expect_status=[RUNNING],
                decision=summary["decision"], result=summary, finished_at=finished, **fields):
            current = await self.store.get_execution(self.rec.id)
            status = current.status if current is not None else status
        self._emit("execution_finished", None, status=status)
        return ExecutionResult(self.rec.id, status, summary["results"], summary["consensus"],
                               summary["decision"], summary["output"], reused=self.reused,
                               usage=await self._usage(), failed_agent=fields["failed_agent"],
                               failure_type=fields["failure_type"], error=fields["error"])

    async def _usage(self) -> dict[str, Any] | None:
        if self.llm is None:
            return None
        records = await self.store.usage_records(execution_id=self.rec.id)
        return {"calls": len(records),
                "prompt_tokens": sum(r.prompt_tokens for r in records),
                "completion_tokens": sum(r.completion_tokens for r in records),
                "cost_usd": str(nano_to_dollars(sum(r.cost_nano for r in records)))}
