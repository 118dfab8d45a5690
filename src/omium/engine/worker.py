"""Workers: claim queued executions, hold a lease renewed by heartbeat, run them.

A worker that dies stops renewing; once its lease expires another worker reclaims the
execution (a new lease epoch) and resumes it from its checkpoints. Every write of a run carries
its epoch, so a paused-then-revived worker can never overwrite the new owner's work.

An execution whose workers keep dying (an agent that ``os._exit``s, exhausts memory, segfaults)
would be reclaimed and kill worker after worker forever: past ``max_recoveries`` reclaims it is
failed with ``max_recoveries_exceeded`` instead of being run again (a dead letter; resume it
by hand once fixed).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import time
import uuid
from typing import TYPE_CHECKING, Any

from omium import metrics
from omium.agents._imports import allowed_modules
from omium.agents.refs import reference_problems
from omium.engine._llm import build_router, router_for
from omium.engine.endpoints import AgentEndpoints, start_run
from omium.engine.graph import WorkflowGraph, prepare
from omium.engine.run import Run
from omium.errors import StaleLeaseError, WorkflowValidationError
from omium.status import Status
from omium.store.base import WorkerStore
from omium.store.records import EventRecord, ExecutionRecord

if TYPE_CHECKING:
    from omium.llm.router import LLMRouter

log = logging.getLogger("omium.worker")

DEFAULT_MAX_RECOVERIES = 3
# Executions one worker runs at once. Agents mostly wait (on LLM calls, on I/O), so a worker
# holds many: an in-flight execution costs memory (see the README), not a core.
DEFAULT_CONCURRENCY = 1000
# At most this many executions claimed in one transaction (a large claim holds the writer).
CLAIM_BATCH = 200
# An idle worker woken by a submit in its process waits this long before claiming, so that
# under a stream of submits it claims many per transaction (at most ~1/WAKE_GATHER_S claims
# a second) for a few milliseconds of latency.
WAKE_GATHER_S = 0.005
# At most this many leases renewed in one statement (bound parameters: two per lease).
RENEW_BATCH = 500


class _Held:
    """A run's lease as the renewal loop sees it: the epoch to renew, when it last was, and
    the verdict that stops the run ("lost", "cancel", "unrenewable")."""

    __slots__ = ("epoch", "renewed", "verdict")

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch
        self.renewed = time.monotonic()
        self.verdict: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    def decide(self, verdict: str) -> None:
        if not self.verdict.done():
            self.verdict.set_result(verdict)


class Worker:
    def __init__(self, store: WorkerStore, *, worker_id: str | None = None,
                 lease_s: float = 10.0, concurrency: int = DEFAULT_CONCURRENCY,
                 poll_s: float = 0.2,
                 grace_s: float = 30.0,
                 router: LLMRouter | None = None,
                 max_recoveries: int = DEFAULT_MAX_RECOVERIES,
                 endpoints: AgentEndpoints | None = None) -> None:
        if max_recoveries < 0:
            raise ValueError(f"max_recoveries must be >= 0, got {max_recoveries}")
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        self.store = store
        # Reclaims allowed before a poison execution is failed (a workflow's own
        # max_recoveries wins).
        self.max_recoveries = max_recoveries
        self.id = worker_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.lease_s, self.concurrency = lease_s, concurrency
        self.poll_s, self.grace_s = poll_s, grace_s
        self._router = router
        # Agents' own OpenAI-compatible endpoint (ctx.llm_base_url): the service's gateway
        # when given, else one this worker serves on loopback on first need (as a CLI run).
        self._endpoints = endpoints
        self._plans: dict[str, WorkflowGraph] = {}
        self._active: dict[str, tuple[asyncio.Task[Any], int]] = {}  # id -> (run task, epoch)
        # The leases of the runs under way, all renewed by one loop in one statement.
        self._held: dict[str, _Held] = {}
        # An execution that may have killed its last worker runs alone: claimed only when
        # idle, and nothing else is claimed until it ends (innocent executions running beside
        # a poison one would die with it, reclaim after reclaim, and be dead-lettered too).
        self._alone: str | None = None
        # Set whenever a run ends: a full worker waits on this one event, not on each of its
        # (up to thousands of) run tasks, which would cost O(concurrency) per run ended.
        self._freed = asyncio.Event()
        self.completed = 0

    # -- the loop
    async def run(self, stop: asyncio.Event) -> None:
        """Claim and run executions until ``stop`` is set, then drain gracefully."""
        beat = asyncio.ensure_future(self._heartbeat(stop))
        renew = asyncio.ensure_future(self._renew_leases())
        stopping = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                # Taken before the claim reads the queue: a submit in this process that lands
                # after the read sets this very event, so the wait below cannot miss it.
                queued = self.store.queue_signal()
                drained = await self._fill()
                if len(self._active) >= self.concurrency or self._alone is not None:
                    # Full (or running a suspect alone): claim again as soon as any run ends
                    # (not at the next poll, which would cap a worker at concurrency / poll_s
                    # executions per second). No await since _fill's last check: a run that
                    # ends from here on sets the event.
                    self._freed.clear()
                    await self._wait(stopping, self._freed, None)
                elif drained:
                    # The queue is empty: wait for this process to queue something, or poll
                    # for what other processes queue (jitter keeps idle workers out of step).
                    if await self._wait(stopping, queued, self.poll_s * (0.5 + random.random())):
                        # Woken by a submit: let a burst of them gather, so a stream of
                        # submits is claimed in batches, not a claim transaction each.
                        await asyncio.wait([stopping], timeout=WAKE_GATHER_S)
        finally:
            stopping.cancel()
            await self._drain()
            for task in (beat, renew):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            with contextlib.suppress(Exception):
                await self.store.worker_stopped(self.id)
            if self._endpoints is not None:  # a local gateway calls the router: first
                await self._endpoints.aclose()
            if self._router is not None:
                await self._router.aclose()

    @staticmethod
    async def _wait(stopping: asyncio.Future[Any], event: asyncio.Event,
                    within_s: float | None) -> bool:
        """Until ``event`` is set (True), ``stopping``, or ``within_s`` pass."""
        if event.is_set():
            return True
        woken = asyncio.ensure_future(event.wait())
        try:
            await asyncio.wait([stopping, woken], timeout=within_s,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            woken.cancel()
        return event.is_set()

    async def _fill(self) -> bool:
        """Claim into the free slots, a batch per transaction, until full or the queue is
        empty; True if it found the queue empty. While a suspect waits the store hands out at
        most one (and none to a worker running something): a suspect claimed runs alone."""
        while len(self._active) < self.concurrency and self._alone is None:
            limit = min(self.concurrency - len(self._active), CLAIM_BATCH)
            claims = await self.store.claim_executions(self.id, self.lease_s, limit,
                                                       suspects=not self._active)
            for rec, reclaimed in claims:
                task = asyncio.ensure_future(self._execute(rec, reclaimed))
                self._active[rec.id] = (task, rec.lease_epoch)
                task.add_done_callback(lambda _t, eid=rec.id: self._ended(eid))
                if reclaimed or rec.recoveries > 0:
                    self._alone = rec.id
            if len(claims) < limit:  # the queue has no more for us now
                return True
        return False

    def _ended(self, execution_id: str) -> None:
        self._active.pop(execution_id, None)
        if self._alone == execution_id:
            self._alone = None
        self._freed.set()

    async def _heartbeat(self, stop: asyncio.Event) -> None:
        host, pid = socket.gethostname(), os.getpid()
        while True:
            with contextlib.suppress(Exception):  # a missed beat only delays readiness
                await self.store.worker_heartbeat(self.id, host, pid, len(self._active))
            await asyncio.sleep(self.lease_s / 3)

    async def _drain(self) -> None:
        """Graceful shutdown: let running executions finish within the grace period, then
        stop them and give their leases back so another worker picks them up at once."""
        if not self._active:
            return
        tasks = [t for t, _ in self._active.values()]
        await asyncio.wait(tasks, timeout=self.grace_s)
        for execution_id, (task, epoch) in list(self._active.items()):
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
            with contextlib.suppress(Exception):
                await self.store.release_lease(execution_id, epoch)

    # -- one execution
    def _plan(self, rec: ExecutionRecord) -> WorkflowGraph:
        key = rec.workflow_id
        if key is not None and key in self._plans:
            return self._plans[key]
        # What a worker runs was submitted over the API (or requeued from there): its code
        # references get the client's rules again, so a definition stored before a tighter
        # allowlist (or written into the database by hand) cannot run what the API refuses.
        # A CLI run's own definition (it carries base_dir) is the operator's code.
        if "base_dir" not in rec.definition:
            problems = reference_problems(rec.definition, allowed_modules())
            if problems:
                raise WorkflowValidationError(problems)
        plan = prepare(rec.definition)
        if key is not None:
            self._plans[key] = plan
        return plan

    def _llm(self, plan: WorkflowGraph) -> LLMRouter | None:
        if self._router is None:
            self._router = router_for(plan, self.store)
        return self._router

    def _gateway_router(self) -> LLMRouter:
        if self._router is None:
            self._router = build_router(self.store)
        return self._router

    def _agent_endpoints(self) -> AgentEndpoints:
        if self._endpoints is None:
            self._endpoints = AgentEndpoints(router=self._gateway_router)
        return self._endpoints

    async def _execute(self, rec: ExecutionRecord, reclaimed: bool) -> None:
        epoch = rec.lease_epoch
        try:
            plan = self._plan(rec)
            # The claim wrote the "claimed" (and, reclaimed, "failure_detected") events.
            if reclaimed:
                metrics.lease_reclaims.inc()
                metrics.failures_detected.labels("worker_lost").inc()
                limit = plan.workflow.max_recoveries
                limit = self.max_recoveries if limit is None else limit
                if rec.recoveries > limit:
                    await self._dead_letter(rec, plan, epoch, limit)
                    return
            # A first claim of a never-run execution has no checkpoints to read.
            fresh = epoch == 1 and rec.result is None and not reclaimed
            drive = start_run(self._agent_endpoints(), Run(
                self.store, plan, rec, llm=self._llm(plan), epoch=epoch).drive(fresh=fresh))
            await self._hold_lease(rec, epoch, drive)
        except StaleLeaseError:
            metrics.stale_writes_rejected.inc()
            log.warning("execution %s: lease epoch %s lost to another worker", rec.id, epoch)
        except asyncio.CancelledError:
            raise
        except WorkflowValidationError as err:  # refused here: fail it, naming each problem
            log.warning("execution %s refused: %s", rec.id, err)
            with contextlib.suppress(Exception):
                await self.store.update_execution(
                    rec.id, status=Status.FAILED, epoch=epoch, error=str(err),
                    failure_type="validation_error", finished_at=time.time(), lease_owner=None,
                    lease_expires_at=None)
        except Exception as err:  # a bug or a broken definition: fail it, do not loop on it
            log.exception("execution %s failed in the worker", rec.id)
            with contextlib.suppress(Exception):
                await self.store.update_execution(
                    rec.id, status=Status.FAILED, epoch=epoch, error=f"worker error: {err!r}",
                    failure_type="exception", finished_at=time.time(), lease_owner=None,
                    lease_expires_at=None)
        else:
            self.completed += 1

    async def _dead_letter(self, rec: ExecutionRecord, plan: WorkflowGraph, epoch: int,
                           limit: int) -> None:
        """Fail a poison execution without running any agent, and give up its lease."""
        done = {cp.agent_id for cp in await self.store.get_checkpoints(rec.id)}
        # What was running when the workers died: the agents whose inputs were all ready.
        in_flight = [n.id for n in plan.nodes.values() if n.agent is not None
                     and n.id not in done and all(d in done for d in n.deps)]
        agents = f"; agent(s) in flight: {', '.join(in_flight)}" if in_flight else ""
        error = (f"the worker running this execution was lost {rec.recoveries} times "
                 f"(max_recoveries {limit}){agents}; fix the cause, then resume it")
        metrics.failures_detected.labels("max_recoveries_exceeded").inc()
        log.error("execution %s dead-lettered: %s", rec.id, error)
        events = [EventRecord(rec.id, "dead_lettered", None, {
            "failure_type": "max_recoveries_exceeded", "recoveries": rec.recoveries,
            "max_recoveries": limit, "agents": in_flight}, time.time())]
        await self.store.update_execution(
            rec.id, status=Status.FAILED, epoch=epoch, expect_status=[Status.RUNNING],
            events=events, failure_type="max_recoveries_exceeded", error=error,
            failed_agent=in_flight[0] if len(in_flight) == 1 else None,
            finished_at=time.time(), lease_owner=None, lease_expires_at=None)

    async def _hold_lease(self, rec: ExecutionRecord, epoch: int,
                          drive: asyncio.Future[Any]) -> None:
        """Hold the lease (renewed by ``_renew_leases``) until the run ends; stop the run if
        the lease is lost or the execution is cancelled. However this ends (cancelled by a
        shutdown, an error), the run is stopped first: it must never outlive the lease that
        fences it."""
        held = self._held[rec.id] = _Held(epoch)
        try:
            await asyncio.wait([drive, held.verdict], return_when=asyncio.FIRST_COMPLETED)
            if drive.done():
                drive.result()  # re-raise StaleLeaseError and friends
                return
            verdict = held.verdict.result()
            drive.cancel()
            with contextlib.suppress(BaseException):
                await drive
            if verdict == "lost":
                raise StaleLeaseError(f"execution {rec.id}: lease lost")
            if verdict == "unrenewable":
                raise StaleLeaseError(f"execution {rec.id}: lease could not be renewed")
            await self.store.update_execution(
                rec.id, status=Status.CANCELLED, epoch=epoch, finished_at=time.time(),
                lease_owner=None, lease_expires_at=None, events=[EventRecord(
                    rec.id, "cancelled", None, {"worker": self.id}, time.time())])
        finally:
            if self._held.get(rec.id) is held:
                del self._held[rec.id]
            if not drive.done():
                drive.cancel()
                with contextlib.suppress(BaseException):
                    await drive

    async def _renew_leases(self) -> None:
        """Every lease_s / 3, renew every lease held in one statement (per RENEW_BATCH) and
        hand each run its verdict: lost to another worker, cancel requested, or (after a
        lease's worth of failed renewals) unrenewable. A failed renewal is retried at the
        next beat while the lease it last got lasts."""
        while True:
            await asyncio.sleep(self.lease_s / 3)
            held = [(eid, h) for eid, h in self._held.items() if not h.verdict.done()]
            for start in range(0, len(held), RENEW_BATCH):
                await self._renew_batch(held[start:start + RENEW_BATCH])

    async def _renew_batch(self, held: list[tuple[str, _Held]]) -> None:
        try:
            answers = await self.store.renew_leases([(eid, h.epoch) for eid, h in held],
                                                    self.lease_s)
        except Exception:  # a blip: keep trying while the leases we hold last
            now = time.monotonic()
            log.warning("lease renewal of %d execution(s) failed; retrying", len(held))
            for _eid, h in held:
                if now - h.renewed >= self.lease_s:
                    h.decide("unrenewable")
            return
        now = time.monotonic()
        for eid, h in held:
            ours, cancel = answers.get(eid, (False, False))
            h.renewed = now
            if not ours:
                h.decide("lost")
            elif cancel:
                h.decide("cancel")
