"""The service half of the SQL store: API keys, workflows by tenant, leases and fencing,
cancellation, worker heartbeats, and the one-hop execution detail the API serves."""

from __future__ import annotations

import json
import time
from typing import Any

from omium.store._driver import Driver
from omium.store.records import ApiKeyRecord, ExecutionRecord, TenantRecord, WorkflowRecord

_CLAIMABLE = ("(status = 'queued' OR (status = 'running' AND lease_expires_at IS NOT NULL "
              "AND lease_expires_at < :now))")


_NEXT = f"SELECT id FROM executions WHERE {_CLAIMABLE} ORDER BY created_at LIMIT 1"
_TAKE = ("UPDATE executions SET status = 'running', lease_owner = :w, lease_expires_at = :exp, "
         "lease_epoch = lease_epoch + 1, updated_at = :now WHERE id = ({next}) RETURNING *")


def _claim_statements(dialect: str, params: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """PostgreSQL: one statement; SKIP LOCKED lets many workers claim different rows at once,
    and the CTE reads the old status. SQLite: the claim is a BEGIN IMMEDIATE transaction, so
    claimers are serialised (single writer); it reads the old status first, then takes it."""
    if dialect == "postgresql":
        return [(f"WITH c AS (SELECT id, status AS old_status FROM executions WHERE "
                 f"{_CLAIMABLE} ORDER BY created_at LIMIT 1 FOR UPDATE SKIP LOCKED) "
                 "UPDATE executions SET status = 'running', lease_owner = :w, "
                 "lease_expires_at = :exp, lease_epoch = lease_epoch + 1, updated_at = :now "
                 "FROM c WHERE executions.id = c.id RETURNING executions.*, c.old_status",
                 params)]
    return [(f"SELECT status AS old_status FROM executions WHERE id = ({_NEXT})", params),
            (_TAKE.format(next=_NEXT), params)]


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

    async def execution_detail(self, execution_id: str,
                               tenant_id: str) -> dict[str, list[dict[str, Any]]] | None:
        """The execution and everything about it, in one round trip; None if it is not this
        tenant's (another tenant's execution does not exist, as far as callers can tell)."""
        p = {"e": execution_id, "t": tenant_id}
        by = "WHERE execution_id = :e ORDER BY id"
        rows = await self.driver.fetch_many([
            ("SELECT * FROM executions WHERE id = :e AND tenant_id = :t", p),
            ("SELECT agent_id, agent_index, attempt, output, served_by, superseded, started_at, "
             f"finished_at, lease_epoch FROM checkpoints {by}", p),
            ("SELECT from_agent, to_agents, status, acks, reason, error, latency_ms, created_at "
             f"FROM handoffs {by}", p),
            ("SELECT node_id, result, outcome, decision, agreement_level, created_at, "
             f"reviewed_decision, reviewed_at FROM consensus_results {by}", p),
            (f"SELECT id, ts, type, agent_id, data FROM events {by}", p),
            ("SELECT backend, model, model_type, prompt_tokens, completion_tokens, "
             f"cached_tokens, estimated, cost_nano, used_fallback, agent_id FROM usage_records "
             f"{by}", p),
        ])
        if not rows[0]:
            return None
        keys = ("execution", "checkpoints", "handoffs", "consensus", "events", "usage")
        return dict(zip(keys, rows, strict=True))

    async def request_cancel(self, execution_id: str, tenant_id: str) -> str | None:
        """Cancel: queued/failed/awaiting-review executions at once; a running one is flagged
        and its worker stops it at the next heartbeat. Returns the status after, or None."""
        now = time.time()
        params = {"e": execution_id, "t": tenant_id, "ts": now}
        counts = await self.driver.batch([
            ("UPDATE executions SET status = 'cancelled', updated_at = :ts, finished_at = :ts, "
             "cancel_requested = 1 WHERE id = :e AND tenant_id = :t "
             "AND (status IN ('queued', 'failed', 'awaiting_review') OR (status = 'running' "
             "AND lease_expires_at IS NULL))", params),
            ("UPDATE executions SET cancel_requested = 1, updated_at = :ts WHERE id = :e "
             "AND tenant_id = :t AND status = 'running' AND lease_expires_at IS NOT NULL",
             params)])
        row = await self.driver.fetchone(
            "SELECT status FROM executions WHERE id = :e AND tenant_id = :t", params)
        if row is None:
            return None
        return "cancelling" if counts[1] else row["status"]

    # -- leases
    async def claim_execution(self, worker_id: str, lease_s: float
                              ) -> tuple[ExecutionRecord, bool] | None:
        """Take the oldest claimable execution; returns it with its new lease epoch and
        whether it was reclaimed from a worker whose lease had expired."""
        now = time.time()
        params = {"w": worker_id, "exp": now + lease_s, "now": now}
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
