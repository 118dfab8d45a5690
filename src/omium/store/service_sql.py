"""The service half of the SQL store: API keys, workflows by tenant, leases and fencing,
cancellation, worker heartbeats, and the one-hop execution detail the API serves."""

from __future__ import annotations

import json
import time
from typing import Any

from omium.errors import ExecutionStateError
from omium.store._driver import Driver, NoRowsError
from omium.store.records import (
    CANCELLED,
    COMPLETED,
    RUNNING,
    ApiKeyRecord,
    ExecutionRecord,
    TenantRecord,
    WorkflowRecord,
)


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


# An execution's lists as the API reads them: key -> (table, columns), oldest first by id.
_PARTS = {
    "checkpoints": ("checkpoints", "agent_id, agent_index, attempt, output, served_by, "
                    "superseded, started_at, finished_at, lease_epoch"),
    "handoffs": ("handoffs", "from_agent, to_agents, status, acks, reason, error, latency_ms, "
                 "created_at"),
    "consensus": ("consensus_results", "node_id, result, outcome, decision, agreement_level, "
                  "created_at, reviewed_decision, reviewed_at"),
    "events": ("events", "id, ts, type, agent_id, data"),
    "usage": ("usage_records", "backend, model, model_type, prompt_tokens, completion_tokens, "
              "cached_tokens, estimated, cost_nano, used_fallback, agent_id"),
}
_TOTALS = ("SELECT (SELECT COUNT(*) FROM checkpoints WHERE execution_id = :e) AS checkpoints, "
           "(SELECT COUNT(*) FROM handoffs WHERE execution_id = :e) AS handoffs, "
           "(SELECT COUNT(*) FROM consensus_results WHERE execution_id = :e) AS consensus, "
           "(SELECT COUNT(*) FROM events WHERE execution_id = :e) AS events, "
           "COUNT(*) AS usage, COALESCE(SUM(prompt_tokens), 0) AS prompt_tokens, "
           "COALESCE(SUM(completion_tokens), 0) AS completion_tokens, "
           "COALESCE(SUM(cached_tokens), 0) AS cached_tokens, "
           "COALESCE(SUM(cost_nano), 0) AS cost_nano FROM usage_records WHERE execution_id = :e")


class ServiceSql:
    driver: Driver

    # -- API keys and tenants
    async def create_api_key(self, key_hash: str, prefix: str, tenant_id: str | None, *,
                             admin: bool = False) -> None:
        await self.driver.execute(
            "INSERT INTO api_keys (key_hash, prefix, tenant_id, admin, created_at) "
            "VALUES (:h, :p, :t, :a, :ts)",
            {"h": key_hash, "p": prefix, "t": tenant_id, "a": int(admin), "ts": time.time()})

    async def find_api_key(self, key_hash: str) -> ApiKeyRecord | None:
        row = await self.driver.fetchone(
            "SELECT key_hash, prefix, tenant_id, admin, created_at, revoked_at FROM api_keys "
            "WHERE key_hash = :h", {"h": key_hash})
        if row is None:
            return None
        row["admin"] = bool(row["admin"])
        return ApiKeyRecord(**row)

    async def revoke_api_key(self, key_hash: str) -> bool:
        return bool(await self.driver.execute(
            "UPDATE api_keys SET revoked_at = :ts WHERE key_hash = :h AND revoked_at IS NULL",
            {"h": key_hash, "ts": time.time()}))

    async def list_tenants(self) -> list[TenantRecord]:
        rows = await self.driver.fetchall(
            "SELECT id, name, balance_nano, limited, created_at FROM tenants ORDER BY id")
        return [TenantRecord(**{**r, "limited": bool(r["limited"])}) for r in rows]

    # -- workflows by tenant
    async def get_workflow_record(self, workflow_id: str,
                                  tenant_id: str | None = None) -> WorkflowRecord | None:
        row = await self.driver.fetchone(
            "SELECT id, name, tenant_id, definition, created_at FROM workflows WHERE id = :id",
            {"id": workflow_id})
        if row is None or (tenant_id is not None and row["tenant_id"] != tenant_id):
            return None
        row["definition"] = json.loads(row["definition"])
        return WorkflowRecord(**row)

    async def list_workflows(self, tenant_id: str, *, limit: int = 50,
                             before: tuple[float, str] | None = None) -> list[WorkflowRecord]:
        params: dict[str, Any] = {"t": tenant_id, "limit": limit}
        where = "tenant_id = :t"
        if before is not None:
            where += " AND (created_at < :c OR (created_at = :c AND id < :i))"
            params.update(c=before[0], i=before[1])
        rows = await self.driver.fetchall(
            "SELECT id, name, tenant_id, definition, created_at FROM workflows "
            f"WHERE {where} ORDER BY created_at DESC, id DESC LIMIT :limit", params)
        return [WorkflowRecord(**{**r, "definition": json.loads(r["definition"])})
                for r in rows]

    # -- executions as the API sees them
    async def find_by_idempotency_key(self, tenant_id: str, key: str) -> str | None:
        row = await self.driver.fetchone(
            "SELECT id FROM executions WHERE tenant_id = :t AND idempotency_key = :k",
            {"t": tenant_id, "k": key})
        return None if row is None else row["id"]

    async def execution_detail(self, execution_id: str, tenant_id: str, *,
                               limit: int | None = None
                               ) -> dict[str, list[dict[str, Any]]] | None:
        """The execution and everything about it, in one round trip; None if it is not this
        tenant's (another tenant's execution does not exist, as far as callers can tell).
        With ``limit``, each list holds its first ``limit`` rows and ``totals`` (one row)
        counts every row of each and sums the usage, so the answer stays small."""
        p: dict[str, Any] = {"e": execution_id, "t": tenant_id}
        by = "WHERE execution_id = :e ORDER BY id"
        if limit is not None:
            by += " LIMIT :n"
            p["n"] = limit
        queries = [("SELECT * FROM executions WHERE id = :e AND tenant_id = :t", p)]
        queries += [(f"SELECT {cols} FROM {table} {by}", p) for table, cols in _PARTS.values()]
        if limit is not None:
            queries.append((_TOTALS, p))
        rows = await self.driver.fetch_many(queries)
        if not rows[0]:
            return None
        keys = ("execution", *_PARTS, "totals")[:len(rows)]
        return dict(zip(keys, rows, strict=True))

    async def execution_rows(self, execution_id: str, tenant_id: str, part: str, *,
                             after: int = 0, limit: int = 100) -> list[dict[str, Any]] | None:
        """One page of one of an execution's lists (``part``: a key of ``execution_detail``
        but "execution"), oldest first: rows whose ``row_id`` is above ``after``. None if the
        execution is not this tenant's."""
        table, cols = _PARTS[part]
        p = {"e": execution_id, "t": tenant_id, "after": after, "n": limit}
        found, rows = await self.driver.fetch_many([
            ("SELECT id FROM executions WHERE id = :e AND tenant_id = :t", p),
            (f"SELECT id AS row_id, {cols} FROM {table} WHERE execution_id = :e "
             "AND id > :after ORDER BY id LIMIT :n", p)])
        return rows if found else None

    # Cancelling now and its event, in one transaction (see request_cancel).
    _CANCEL_TRIES = 5
    _CANCEL_NOW = ("UPDATE executions SET status = 'cancelled', updated_at = :ts, "
                   "finished_at = :ts, cancel_requested = 1 WHERE id = :e AND tenant_id = :t "
                   "AND status = :old AND (status IN ('queued', 'failed', 'awaiting_review') "
                   "OR (status = 'running' AND lease_expires_at IS NULL))")
    _CANCELLED_EVENT = ("INSERT INTO events (execution_id, ts, type, agent_id, data) "
                        "VALUES (:e, :ts, 'cancelled', NULL, :data)")
    _FLAG_CANCEL = ("UPDATE executions SET cancel_requested = 1, updated_at = :ts WHERE id = :e "
                    "AND tenant_id = :t AND status = 'running' AND lease_expires_at IS NOT NULL")

    async def request_cancel(self, execution_id: str, tenant_id: str) -> str | None:
        """Cancel: queued/failed/awaiting-review executions (and CLI runs) at once, with a
        ``cancelled`` event in the same transaction; a worker's run is flagged and its worker
        stops it (and records the event) at its next lease renewal. Returns "cancelled",
        "cancelling", or None if it is not this tenant's; an ended one is an
        ``ExecutionStateError``."""
        p: dict[str, Any] = {"e": execution_id, "t": tenant_id}
        # Change only from the status just read: the event then says what was cancelled, and
        # a status that moved in between (a claim, a release, a review) is read again.
        for _ in range(self._CANCEL_TRIES):
            row = await self.driver.fetchone(
                "SELECT status, lease_expires_at FROM executions WHERE id = :e "
                "AND tenant_id = :t", p)
            if row is None:
                return None
            status = row["status"]
            if status in (COMPLETED, CANCELLED):
                raise ExecutionStateError(f"execution {execution_id} is {status} already")
            params = {**p, "ts": time.time(), "old": status,
                      "data": json.dumps({"from_status": status})}
            if status == RUNNING and row["lease_expires_at"] is not None:
                if await self.driver.execute(self._FLAG_CANCEL, params):
                    return "cancelling"
                continue
            try:
                await self.driver.batch(
                    [(self._CANCEL_NOW, params), (self._CANCELLED_EVENT, params)], require=[0])
                return "cancelled"
            except NoRowsError:
                continue
        raise ExecutionStateError(f"execution {execution_id} kept changing while cancelling; "
                                  "try again")

    # -- leases
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
        results = await self.driver.fetch_in_transaction(
            _claim_statements(self.driver.dialect, params))
        if not results[-1]:
            return None
        row = results[-1][0]
        old = row.pop("old_status") if "old_status" in row else results[0][0]["old_status"]
        reclaimed = old == "running"
        for key in ("definition", "inputs", "decision", "result"):
            row[key] = None if row[key] is None else json.loads(row[key])
        row["cancel_requested"] = bool(row["cancel_requested"])
        return ExecutionRecord(**row), reclaimed

    async def renew_lease(self, execution_id: str, epoch: int,
                          lease_s: float) -> tuple[bool, bool]:
        """Extend the lease while we still hold ``epoch``: (still ours, cancel requested)."""
        rows = await self.driver.fetch_write(
            "UPDATE executions SET lease_expires_at = :exp WHERE id = :e AND lease_epoch = "
            ":epoch AND status = 'running' RETURNING cancel_requested",
            {"e": execution_id, "epoch": epoch, "exp": time.time() + lease_s})
        return (True, bool(rows[0]["cancel_requested"])) if rows else (False, False)

    async def release_lease(self, execution_id: str, epoch: int) -> bool:
        """Give an unfinished execution back to the queue (graceful shutdown). The epoch moves
        on, so nothing the releasing worker might still write can land."""
        return bool(await self.driver.execute(
            "UPDATE executions SET status = 'queued', lease_owner = NULL, "
            "lease_expires_at = NULL, lease_epoch = lease_epoch + 1, updated_at = :ts "
            "WHERE id = :e AND lease_epoch = :epoch "
            "AND status = 'running'", {"e": execution_id, "epoch": epoch, "ts": time.time()}))

    async def queue_depth(self) -> int:
        row = await self.driver.fetchone(
            "SELECT COUNT(*) AS n FROM executions WHERE status = 'queued'")
        return int(row["n"]) if row else 0

    # -- workers
    async def worker_heartbeat(self, worker_id: str, host: str, pid: int, running: int) -> None:
        now = time.time()
        await self.driver.batch([
            ("INSERT INTO workers (id, host, pid, started_at, heartbeat_at, running) VALUES "
             "(:id, :host, :pid, :ts, :ts, :n) ON CONFLICT (id) DO UPDATE SET "
             "heartbeat_at = :ts, running = :n, stopped_at = NULL",
             {"id": worker_id, "host": host, "pid": pid, "ts": now, "n": running})])

    async def worker_stopped(self, worker_id: str) -> None:
        await self.driver.execute("UPDATE workers SET stopped_at = :ts, running = 0 WHERE id = :id",
                                  {"id": worker_id, "ts": time.time()})

    async def live_workers(self, within_s: float) -> int:
        row = await self.driver.fetchone(
            "SELECT COUNT(*) AS n FROM workers WHERE stopped_at IS NULL AND heartbeat_at >= :t",
            {"t": time.time() - within_s})
        return int(row["n"]) if row else 0
