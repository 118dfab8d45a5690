"""Workers: claim queued executions, hold a lease renewed by heartbeat, run them.

A worker that dies stops renewing; once its lease expires another worker reclaims the
execution (a new lease epoch) and resumes it from its checkpoints. Every write of a run carries
its epoch, so a paused-then-revived worker can never overwrite the new owner's work.
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
from omium.billing.ledger import Ledger
from omium.engine.plan import Plan, prepare
from omium.engine.run import Run
from omium.errors import StaleLeaseError
from omium.store.base import Store
from omium.store.records import CANCELLED, FAILED, EventRecord, ExecutionRecord

if TYPE_CHECKING:
    from omium.llm.router import LLMRouter

log = logging.getLogger("omium.worker")


class Worker:
    def __init__(self, store: Store, *, worker_id: str | None = None, lease_s: float = 10.0,
                 concurrency: int = 4, poll_s: float = 0.2, grace_s: float = 30.0,
                 router: LLMRouter | None = None) -> None:
        self.store = store
        self.id = worker_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.lease_s, self.concurrency = lease_s, concurrency
        self.poll_s, self.grace_s = poll_s, grace_s
        self._router = router
        self._plans: dict[str, Plan] = {}
        self._active: dict[str, tuple[asyncio.Task[Any], int]] = {}  # id -> (run task, epoch)
        self.completed = 0

    # -- the loop
    async def run(self, stop: asyncio.Event) -> None:
        """Claim and run executions until ``stop`` is set, then drain gracefully."""
        beat = asyncio.ensure_future(self._heartbeat(stop))
        stopping = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                claimed = await self._fill()
                if len(self._active) >= self.concurrency:
                    # Full: claim again as soon as any run ends (not at the next poll, which
                    # would cap a worker at concurrency / poll_s executions per second).
                    await asyncio.wait([stopping, *(t for t, _ in self._active.values())],
                                       return_when=asyncio.FIRST_COMPLETED)
                elif not claimed:
                    # The queue is empty. Jitter keeps idle workers from polling in lockstep.
                    await asyncio.wait([stopping], timeout=self.poll_s * (0.5 + random.random()))
        finally:
            stopping.cancel()
            await self._drain()
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat
            with contextlib.suppress(Exception):
                await self.store.worker_stopped(self.id)
            if self._router is not None:
                await self._router.aclose()

    async def _fill(self) -> int:
        claimed = 0
        while len(self._active) < self.concurrency:
            claim = await self.store.claim_execution(self.id, self.lease_s)
            if claim is None:
                break
            rec, reclaimed = claim
            task = asyncio.ensure_future(self._execute(rec, reclaimed))
            self._active[rec.id] = (task, rec.lease_epoch)
            task.add_done_callback(lambda _t, eid=rec.id: self._active.pop(eid, None))
            claimed += 1
        return claimed

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
    def _plan(self, rec: ExecutionRecord) -> Plan:
        key = rec.workflow_id
        if key is None:
            return prepare(rec.definition)
        if key not in self._plans:
            self._plans[key] = prepare(rec.definition)
        return self._plans[key]

    def _llm(self, plan: Plan) -> LLMRouter | None:
        if self._router is None and any(a.framework == "llm" for a in plan.workflow.agents):
            from omium.llm.config import load_config
            from omium.llm.router import LLMRouter

            self._router = LLMRouter(load_config(), ledger=Ledger(self.store))
        return self._router

    async def _execute(self, rec: ExecutionRecord, reclaimed: bool) -> None:
        epoch = rec.lease_epoch
        try:
            plan = self._plan(rec)
            events = [EventRecord(rec.id, "claimed", None, {"worker": self.id, "epoch": epoch,
                                                            "reclaimed": reclaimed}, time.time())]
            if reclaimed:
                metrics.lease_reclaims.inc()
                metrics.failures_detected.labels("worker_lost").inc()
                events.append(EventRecord(rec.id, "failure_detected", None,
                                          {"failure_type": "worker_lost"}, time.time()))
            await self.store.add_events(events, epoch=epoch)
            # A first claim of a never-run execution has no checkpoints to read.
            fresh = epoch == 1 and rec.result is None and not reclaimed
            drive = asyncio.ensure_future(
                Run(self.store, plan, rec, llm=self._llm(plan), epoch=epoch).drive(fresh=fresh))
            await self._hold_lease(rec, epoch, drive)
        except StaleLeaseError:
            metrics.stale_writes_rejected.inc()
            log.warning("execution %s: lease epoch %s lost to another worker", rec.id, epoch)
        except asyncio.CancelledError:
            raise
        except Exception as err:  # a bug or a broken definition: fail it, do not loop on it
            log.exception("execution %s failed in the worker", rec.id)
            with contextlib.suppress(Exception):
                await self.store.update_execution(
                    rec.id, status=FAILED, epoch=epoch, error=f"worker error: {err!r}",
                    failure_type="exception", finished_at=time.time(), lease_owner=None,
                    lease_expires_at=None)
        else:
            self.completed += 1

    async def _hold_lease(self, rec: ExecutionRecord, epoch: int,
                          drive: asyncio.Future[Any]) -> None:
        """Renew the lease until the run ends; stop the run if the lease is lost or the
        execution is cancelled. However this ends (cancelled by a shutdown, an error), the
        run is stopped first: it must never outlive the lease that fences it."""
        try:
            await self._renew_until_done(rec, epoch, drive)
        finally:
            if not drive.done():
                drive.cancel()
                with contextlib.suppress(BaseException):
                    await drive

    async def _renew_until_done(self, rec: ExecutionRecord, epoch: int,
                                drive: asyncio.Future[Any]) -> None:
        renewed = time.monotonic()
        while True:
            done, _ = await asyncio.wait([drive], timeout=self.lease_s / 3)
            if done:
                drive.result()  # re-raise StaleLeaseError and friends
                return
            try:
                ours, cancel = await self.store.renew_lease(rec.id, epoch, self.lease_s)
            except Exception:  # a blip: keep trying while the lease we hold lasts
                if time.monotonic() - renewed < self.lease_s:
                    log.warning("execution %s: lease renewal failed; retrying", rec.id)
                    continue
                raise StaleLeaseError(f"execution {rec.id}: lease could not be renewed"
                                      ) from None
            renewed = time.monotonic()
            if not ours or cancel:
                drive.cancel()
                with contextlib.suppress(BaseException):
                    await drive
                if not ours:
                    raise StaleLeaseError(f"execution {rec.id}: lease lost")
                await self.store.update_execution(
                    rec.id, status=CANCELLED, epoch=epoch, finished_at=time.time(),
                    lease_owner=None, lease_expires_at=None, events=[EventRecord(
                        rec.id, "cancelled", None, {"worker": self.id}, time.time())])
                return
