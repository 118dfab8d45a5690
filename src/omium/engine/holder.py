"""A run driven in this process (``omium run``, ``resume``, ``review``; the Python API) holds
a lease like a worker's, so that it can be seen, cancelled and taken over.

- Renewed every ``RENEW_S``: a cancel (``omium executions cancel``, the API) is seen within
  that, the run stops, its in-flight async agents are cancelled, and it ends ``cancelled``.
- Interrupted (Ctrl-C, SIGTERM: the task is cancelled) it ends ``failed`` with failure type
  ``interrupted``, which ``resume`` continues from its checkpoints.
- Killed (SIGKILL, a crash), its lease expires: ``executions list`` shows it orphaned, and
  ``omium resume`` (or a worker, reclaiming it) takes it over with the next epoch, which
  fences out anything the old process might still write.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from typing import Any

from omium.engine.result import ExecutionResult
from omium.errors import StaleLeaseError
from omium.ids import random_hex
from omium.status import Status
from omium.store.base import Store
from omium.store.records import EventRecord

LEASE_S = 15.0  # how long a killed process's run looks alive before it shows as orphaned
RENEW_S = 1.0  # how soon a cancel is seen
INTERRUPTED = "interrupted"  # the failure type of a run stopped by Ctrl-C or SIGTERM


def holder_id() -> str:
    return f"cli-{socket.gethostname()}-{os.getpid()}-{random_hex(6)}"


def lease_fields(holder: str, epoch: int) -> dict[str, Any]:
    """The columns that give ``holder`` the lease at ``epoch``, from now."""
    return {"lease_owner": holder, "lease_expires_at": time.time() + LEASE_S,
            "lease_epoch": epoch}


def holder_gone(owner: str | None) -> bool:
    """The lease holder was a process on this machine that no longer exists (a holder id
    is ``[cli-]HOST-PID-RANDOM``, a worker's too): its lease need not be waited out."""
    if not owner:
        return False
    parts = owner.removeprefix("cli-").rsplit("-", 2)
    if len(parts) != 3 or parts[0] != socket.gethostname() or not parts[1].isdigit():
        return False
    try:
        os.kill(int(parts[1]), 0)
    except ProcessLookupError:
        return True
    except OSError:  # it exists (another user's process, say)
        return False
    return False


def orphaned(status: str, lease_owner: str | None, lease_expires_at: float | None,
             now: float | None = None) -> bool:
    """Running, but whoever ran it is gone: its lease expired, or its process on this
    machine no longer exists."""
    if status != Status.RUNNING or lease_expires_at is None:
        return False
    return lease_expires_at < (time.time() if now is None else now) or holder_gone(lease_owner)


class Holder:
    """The lease of one run in this process. ``gate`` is awaited by the run before it starts
    agents: a cancel requested since the last renewal stops the run there, before its next
    agent starts (renewing at most every ``GATE_S``, so a fast workflow is not a write per
    agent)."""

    GATE_S = 0.1

    def __init__(self, store: Store, execution_id: str, epoch: int) -> None:
        self.store, self.execution_id, self.epoch = store, execution_id, epoch
        self.renewed = time.monotonic()
        self.cancel = False

    async def renew(self) -> None:
        ours, cancel = await self.store.renew_lease(self.execution_id, self.epoch, LEASE_S)
        self.renewed = time.monotonic()
        if not ours:
            raise StaleLeaseError(f"execution {self.execution_id}: its lease was taken over "
                                  "(it had expired: was this process suspended?)")
        self.cancel = self.cancel or cancel

    async def gate(self) -> None:
        if time.monotonic() - self.renewed >= self.GATE_S:
            await self.renew()
        if self.cancel:  # stop the run that awaits us, before it starts anything more
            raise asyncio.CancelledError

    async def hold(self, drive: asyncio.Future[ExecutionResult]) -> ExecutionResult | None:
        """Await ``drive`` while renewing the lease; stop it on a cancel request (then None:
        the record says how it ended), a lost lease or an interruption, writing what
        happened (fenced by the epoch)."""
        try:
            while not drive.done():
                await asyncio.wait([drive], timeout=RENEW_S)
                if drive.done():
                    break
                try:
                    await self.renew()
                except StaleLeaseError:
                    raise
                except Exception:  # a database blip: retry while the lease we hold lasts
                    if time.monotonic() - self.renewed >= LEASE_S:
                        raise
                if self.cancel:
                    break
            if self.cancel:
                await _stop(drive)
                await self._cancelled()
                return None
            return drive.result()
        except asyncio.CancelledError:  # Ctrl-C or SIGTERM: record it, then let it unwind
            await _stop(drive)
            with contextlib.suppress(Exception):
                await asyncio.shield(_interrupted(self.store, self.execution_id, self.epoch))
            raise
        finally:
            if not drive.done():
                await _stop(drive)

    async def _cancelled(self) -> None:
        now = time.time()
        await self.store.update_execution(
            self.execution_id, status=Status.CANCELLED, epoch=self.epoch,
            expect_status=[Status.RUNNING], finished_at=now, lease_owner=None,
            lease_expires_at=None,
            events=[EventRecord(self.execution_id, "cancelled", None, {"by": "request"}, now)])


async def _stop(drive: asyncio.Future[Any]) -> None:
    drive.cancel()
    with contextlib.suppress(BaseException):
        await drive


async def _interrupted(store: Store, execution_id: str, epoch: int) -> None:
    now = time.time()
    await store.update_execution(
        execution_id, status=Status.FAILED, epoch=epoch, expect_status=[Status.RUNNING],
        failure_type=INTERRUPTED, finished_at=now, lease_owner=None, lease_expires_at=None,
        error=f"interrupted; continue with: omium resume {execution_id}",
        events=[EventRecord(execution_id, INTERRUPTED, None, {}, now)])
