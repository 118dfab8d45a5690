"""``LeaseStore`` in SQL: claims and leases (the epoch that fences a worker's writes), and
worker heartbeats."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from omium.status import Status
from omium.store._driver import Driver
from omium.store._rows import EXECUTION, count
from omium.store._signal import QueueSignal
from omium.store.records import ExecutionRecord

# Every statement here probes one index (migration 0005), so a claim costs O(log n) however
# many executions have ever run: the queue by (status, created_at), leases by expiry, and the
# requeued suspects by their recoveries. tests/test_claim_plans.py checks each plan.
_QUEUED = "status = 'queued'"


def _expired(t: str = "") -> str:
    return (f"{t}status = 'running' AND {t}lease_expires_at IS NOT NULL "
            f"AND {t}lease_expires_at < :now")


_EXPIRED = _expired()

# Rows that may have killed their last worker: about to be reclaimed (running, lease
# expired), or already recovered once and queued again (a graceful release keeps the count).
# Workers run them alone, so a poison execution takes no bystander down with it. Two probes,
# not one OR: each uses its own index.
_SUSPECT_WAITS = (f"(EXISTS (SELECT 1 FROM executions s WHERE {_expired('s.')}) "
                  "OR EXISTS (SELECT 1 FROM executions s WHERE s.status = 'queued' "
                  "AND s.recoveries > 0))")

# How many to take: ``:n``, but while a suspect waits an idle claimer (:suspects = 1) takes
# one (the oldest, so a suspect cannot starve; the worker then runs a suspect alone) and a
# busy one (:suspects = 0) nothing: it drains, and the first idle worker takes the suspect.
_TAKE_N = (f"(CASE WHEN {_SUSPECT_WAITS} THEN CAST(:suspects AS INTEGER) "
           "ELSE CAST(:n AS INTEGER) END)")

# Taking a row that is still 'running' (its lease expired) is a reclaim after a lost worker:
# counted in the same statement, so a worker that dies right after claiming still counts.
# (SET expressions read the row as it was before the update.)
_COUNT_RECLAIM = "recoveries = recoveries + CASE WHEN status = 'running' THEN 1 ELSE 0 END"
_SET_CLAIMED = ("status = 'running', lease_owner = :w, lease_expires_at = :exp, "
                f"lease_epoch = lease_epoch + 1, {_COUNT_RECLAIM}, updated_at = :now")


def _branch(where: str, lock: str = "") -> str:
    return (f"SELECT id, status, created_at FROM executions WHERE {where} "
            f"ORDER BY created_at LIMIT :n{lock}")


# The oldest claimable rows: the oldest queued and the oldest expired, each from its index,
# then the oldest of both (no OR: SQLite would walk every execution ever created).
_CANDIDATES = (f"SELECT id, status AS old_status, created_at FROM "
               f"(SELECT * FROM ({_branch(_QUEUED)}) UNION ALL "
               f"SELECT * FROM ({_branch(_EXPIRED)})) ORDER BY created_at LIMIT {_TAKE_N}")


# The claim's events, written by the claim itself (no write per execution for them): each
# claimed row gets ``claimed`` {worker, epoch, reclaimed}, and a reclaimed one then
# ``failure_detected`` {failure_type: worker_lost, recoveries}. ``{src}`` has the rows as they
# are after the claim (id, created_at, lease_epoch, recoveries, old_status).
_CLAIM_EVENTS = (
    "INSERT INTO events (execution_id, ts, type, agent_id, data) "
    "SELECT id, :now, type, NULL, data FROM ("
    "SELECT id, created_at, 0 AS k, 'claimed' AS type, "
    "{obj}('worker', CAST(:w AS TEXT), 'epoch', lease_epoch, 'reclaimed', {reclaimed}){cast} "
    "AS data FROM {src} UNION ALL "
    "SELECT id, created_at, 1 AS k, 'failure_detected' AS type, "
    "{obj}('failure_type', 'worker_lost', 'recoveries', recoveries){cast} AS data "
    "FROM {src} WHERE old_status = 'running') ev ORDER BY created_at, id, k")


def _claim_statements(dialect: str, params: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """PostgreSQL: one statement; SKIP LOCKED lets many workers claim different rows at once
    (FOR UPDATE per branch: it cannot lock through a UNION), and the CTE reads the old
    status. SQLite: a BEGIN IMMEDIATE transaction, so claimers are serialised (single
    writer); it reads the old statuses first, writes the events of the rows it is about to
    take (the candidates cannot change inside the transaction), then takes the same rows."""
    if dialect == "postgresql":
        lock = " FOR UPDATE SKIP LOCKED"
        # json_build_object is json; the events' data column is text.
        events = _CLAIM_EVENTS.format(obj="json_build_object", cast="::text", src="u",
                                      reclaimed="old_status = 'running'")
        return [(f"WITH q AS ({_branch(_QUEUED, lock)}), r AS ({_branch(_EXPIRED, lock)}), "
                 "c AS (SELECT id, status AS old_status, created_at FROM "
                 "(SELECT * FROM q UNION ALL SELECT * FROM r) u "
                 f"ORDER BY created_at LIMIT {_TAKE_N}), "
                 f"u AS (UPDATE executions SET {_SET_CLAIMED} FROM c WHERE executions.id = c.id "
                 "RETURNING executions.*, c.old_status), "
                 f"ev AS ({events}) SELECT * FROM u", params)]
    after = ("(SELECT c.id, c.created_at, c.old_status, e.lease_epoch + 1 AS lease_epoch, "
             "e.recoveries + CASE WHEN c.old_status = 'running' THEN 1 ELSE 0 END "
             f"AS recoveries FROM ({_CANDIDATES}) c JOIN executions e ON e.id = c.id)")
    events = _CLAIM_EVENTS.format(
        obj="json_object", cast="", src=after,
        reclaimed="json(CASE WHEN old_status = 'running' THEN 'true' ELSE 'false' END)")
    return [(_CANDIDATES, params), (events, params),
            (f"UPDATE executions SET {_SET_CLAIMED} WHERE id IN "
             f"(SELECT id FROM ({_CANDIDATES})) RETURNING *", params)]



def _renew_statement(held: Sequence[tuple[str, int]], lease_s: float
                     ) -> tuple[str, dict[str, Any]]:
    """One UPDATE for all of a worker's leases: primary-key lookups, each row renewed only
    while it still has the epoch the worker holds."""
    params: dict[str, Any] = {"exp": time.time() + lease_s}
    ids, cases = [], []
    for i, (execution_id, epoch) in enumerate(held):
        params[f"e{i}"], params[f"p{i}"] = execution_id, epoch
        ids.append(f":e{i}")
        cases.append(f"WHEN :e{i} THEN CAST(:p{i} AS INTEGER)")
    return ("UPDATE executions SET lease_expires_at = :exp WHERE id IN "
            f"({', '.join(ids)}) AND status = 'running' AND lease_epoch = "
            f"CASE id {' '.join(cases)} END RETURNING id, cancel_requested", params)


_RELEASE = ("UPDATE executions SET status = 'queued', lease_owner = NULL, "
            "lease_expires_at = NULL, lease_epoch = lease_epoch + 1, updated_at = :ts "
            "WHERE id = :e AND lease_epoch = :epoch AND status = 'running'")
_QUEUE_DEPTH = f"SELECT COUNT(*) AS n FROM executions WHERE {_QUEUED}"
_LIVE_WORKERS = ("SELECT COUNT(*) AS n FROM workers WHERE stopped_at IS NULL "
                 "AND heartbeat_at >= :t")


class LeaseSql:
    _driver: Driver
    _queue: QueueSignal

    def queue_signal(self) -> asyncio.Event:
        return self._queue.current()

    async def claim_executions(self, worker_id: str, lease_s: float, limit: int, *,
                               suspects: bool = True) -> list[tuple[ExecutionRecord, bool]]:
        """Take up to ``limit`` of the oldest claimable executions in one transaction:
        ``[(record with its new lease epoch, reclaimed), ...]``, oldest first; ``[]`` if
        none. ``reclaimed``: taken from a worker whose lease had expired (a reclaim also
        counts in ``recoveries``; the worker dead-letters it past ``max_recoveries``).

        While an execution that may have killed its last worker (a suspect: lease expired,
        or requeued with ``recoveries > 0``) waits, at most one is taken: the oldest
        claimable, with ``suspects=True`` (an idle worker; run a suspect alone), nothing with
        ``suspects=False`` (a worker already running something). The same as ``limit``
        sequential ``claim_execution`` calls that stop at the first None."""
        if limit < 1:
            return []
        now = time.time()
        params = {"w": worker_id, "exp": now + lease_s, "now": now, "n": limit,
                  "suspects": int(suspects)}
        results = await self._driver.fetch_in_transaction(
            _claim_statements(self._driver.dialect, params))
        taken = results[-1]
        old = ({r["id"]: r["old_status"] for r in results[0]} if len(results) > 1
               else {r["id"]: r.pop("old_status") for r in taken})
        claims = [(EXECUTION.decode(row), old[row["id"]] == Status.RUNNING) for row in taken]
        claims.sort(key=lambda c: c[0].created_at)
        return claims

    async def claim_execution(self, worker_id: str, lease_s: float, *, suspects: bool = True
                              ) -> tuple[ExecutionRecord, bool] | None:
        """``claim_executions`` with ``limit=1``: the claim, or None."""
        claims = await self.claim_executions(worker_id, lease_s, 1, suspects=suspects)
        return claims[0] if claims else None

    async def renew_lease(self, execution_id: str, epoch: int,
                          lease_s: float) -> tuple[bool, bool]:
        """Extend the lease while we still hold ``epoch``: (still ours, cancel requested)."""
        return (await self.renew_leases([(execution_id, epoch)], lease_s))[execution_id]

    async def renew_leases(self, held: Sequence[tuple[str, int]], lease_s: float
                           ) -> dict[str, tuple[bool, bool]]:
        """Extend every lease in ``held`` (``[(execution_id, epoch), ...]``) in one
        statement, each only while it still has that epoch: ``{execution_id: (still ours,
        cancel requested)}`` for each one given. O(k log n)."""
        out = {execution_id: (False, False) for execution_id, _ in held}
        if not held:
            return out
        sql, params = _renew_statement(held, lease_s)
        for row in await self._driver.fetch_write(sql, params):
            out[row["id"]] = (True, bool(row["cancel_requested"]))
        return out

    async def release_lease(self, execution_id: str, epoch: int) -> bool:
        """Give an unfinished execution back to the queue (graceful shutdown). The epoch moves
        on, so nothing the releasing worker might still write can land."""
        released = bool(await self._driver.execute(
            _RELEASE, {"e": execution_id, "epoch": epoch, "ts": time.time()}))
        if released:
            self._queue.queued()
        return released

    async def queue_depth(self) -> int:
        """Queued executions: a count over the queue's own index (bounded by the queue)."""
        return count(await self._driver.fetchone(_QUEUE_DEPTH))

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
        return count(await self._driver.fetchone(_LIVE_WORKERS,
                                                 {"t": time.time() - within_s}))
