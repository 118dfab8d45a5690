"""``LeaseStore`` in SQL: claims and leases (the epoch that fences a worker's writes), and
worker heartbeats."""

from __future__ import annotations

import time
from typing import Any

from omium.status import Status
from omium.store._driver import Driver
from omium.store._rows import EXECUTION, count
from omium.store.records import ExecutionRecord


def _suspect(t: str = "") -> str:
    """Rows that may have killed their last worker: about to be reclaimed (running, lease
    expired), or already recovered once and queued again (a graceful release keeps the
    count). Workers run them alone, so a poison execution takes no bystander down with it."""
    return (f"(({t}status = 'running' AND {t}lease_expires_at IS NOT NULL AND "
            f"{t}lease_expires_at < :now) OR ({t}status = 'queued' AND {t}recoveries > 0))")


# A busy worker (:suspects = 0) takes nothing while a suspect waits: it drains, and the first
# idle worker takes the suspect alone (oldest first, so a suspect cannot starve).
_CLAIMABLE = ("(status = 'queued' OR (status = 'running' AND lease_expires_at IS NOT NULL "
              "AND lease_expires_at < :now)) AND (:suspects = 1 OR NOT EXISTS "
              f"(SELECT 1 FROM executions s WHERE {_suspect('s.')}))")

# Taking a row that is still 'running' (its lease expired) is a reclaim after a lost worker:
# counted in the same statement, so a worker that dies right after claiming still counts.
# (SET expressions read the row as it was before the update.)
_COUNT_RECLAIM = "recoveries = recoveries + CASE WHEN status = 'running' THEN 1 ELSE 0 END"
_NEXT = f"SELECT id FROM executions WHERE {_CLAIMABLE} ORDER BY created_at LIMIT 1"
_TAKE = ("UPDATE executions SET status = 'running', lease_owner = :w, lease_expires_at = :exp, "
         f"lease_epoch = lease_epoch + 1, {_COUNT_RECLAIM}, updated_at = :now "
         "WHERE id = ({next}) RETURNING *")


def _claim_statements(dialect: str, params: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """PostgreSQL: one statement; SKIP LOCKED lets many workers claim different rows at once,
    and the CTE reads the old status. SQLite: the claim is a BEGIN IMMEDIATE transaction, so
    claimers are serialised (single writer); it reads the old status first, then takes it."""
    if dialect == "postgresql":
        return [(f"WITH c AS (SELECT id, status AS old_status FROM executions WHERE "
                 f"{_CLAIMABLE} ORDER BY created_at LIMIT 1 FOR UPDATE SKIP LOCKED) "
                 "UPDATE executions SET status = 'running', lease_owner = :w, "
                 f"lease_expires_at = :exp, lease_epoch = lease_epoch + 1, {_COUNT_RECLAIM}, "
                 "updated_at = :now FROM c WHERE executions.id = c.id "
                 "RETURNING executions.*, c.old_status", params)]
    return [(f"SELECT status AS old_status FROM executions WHERE id = ({_NEXT})", params),
            (_TAKE.format(next=_NEXT), params)]


class LeaseSql:
    _driver: Driver

    async def claim_execution(self, worker_id: str, lease_s: float, *, suspects: bool = True
                              ) -> tuple[ExecutionRecord, bool] | None:
        """Take the oldest claimable execution; returns it with its new lease epoch and
        whether it was reclaimed from a worker whose lease had expired (a reclaim also counts
        in ``recoveries``; the worker dead-letters it past ``max_recoveries``).
        ``suspects=False`` (a worker already running something): None while any execution
        that may have killed its last worker waits, so that one can run alone."""
        now = time.time()
        params = {"w": worker_id, "exp": now + lease_s, "now": now,
                  "suspects": int(suspects)}
        results = await self._driver.fetch_in_transaction(
            _claim_statements(self._driver.dialect, params))
        if not results[-1]:
            return None
        row = results[-1][0]
        old = row.pop("old_status") if "old_status" in row else results[0][0]["old_status"]
        return EXECUTION.decode(row), old == Status.RUNNING

    async def renew_lease(self, execution_id: str, epoch: int,
                          lease_s: float) -> tuple[bool, bool]:
        """Extend the lease while we still hold ``epoch``: (still ours, cancel requested)."""
        rows = await self._driver.fetch_write(
            "UPDATE executions SET lease_expires_at = :exp WHERE id = :e AND lease_epoch = "
            ":epoch AND status = 'running' RETURNING cancel_requested",
            {"e": execution_id, "epoch": epoch, "exp": time.time() + lease_s})
        return (True, bool(rows[0]["cancel_requested"])) if rows else (False, False)

    async def release_lease(self, execution_id: str, epoch: int) -> bool:
        """Give an unfinished execution back to the queue (graceful shutdown). The epoch moves
        on, so nothing the releasing worker might still write can land."""
        return bool(await self._driver.execute(
            "UPDATE executions SET status = 'queued', lease_owner = NULL, "
            "lease_expires_at = NULL, lease_epoch = lease_epoch + 1, updated_at = :ts "
            "WHERE id = :e AND lease_epoch = :epoch "
            "AND status = 'running'", {"e": execution_id, "epoch": epoch, "ts": time.time()}))

    async def queue_depth(self) -> int:
        return count(await self._driver.fetchone(
            "SELECT COUNT(*) AS n FROM executions WHERE status = 'queued'"))

    # -- workers
    async def worker_heartbeat(self, worker_id: str, host: str, pid: int, running: int) -> None:
        now = time.time()
        await self._driver.batch([
            ("INSERT INTO workers (id, host, pid, started_at, heartbeat_at, running) VALUES "
             "(:id, :host, :pid, :ts, :ts, :n) ON CONFLICT (id) DO UPDATE SET "
             "heartbeat_at = :ts, running = :n, stopped_at = NULL",
             {"id": worker_id, "host": host, "pid": pid, "ts": now, "n": running})])

    async def worker_stopped(self, worker_id: str) -> None:
        await self._driver.execute(
            "UPDATE workers SET stopped_at = :ts, running = 0 WHERE id = :id",
            {"id": worker_id, "ts": time.time()})

    async def live_workers(self, within_s: float) -> int:
        return count(await self._driver.fetchone(
            "SELECT COUNT(*) AS n FROM workers WHERE stopped_at IS NULL AND heartbeat_at >= :t",
            {"t": time.time() - within_s}))
