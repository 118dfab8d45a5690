"""The billing half of the SQL store: tenants, balances, usage records, backend failures."""

from __future__ import annotations

import time
import uuid
from dataclasses import asdict
from typing import Any

from omium.errors import UnknownTenantError
from omium.store._driver import ConflictError, Driver, equals
from omium.store.records import TenantRecord, UsageRecord

_USAGE_COLS = ("idempotency_key", "tenant_id", "backend", "model", "model_type",
               "prompt_tokens", "completion_tokens", "cost_nano", "latency_ms", "cached_tokens",
               "estimated", "used_fallback", "execution_id", "agent_id", "created_at", "day")


def _day(ts: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(ts))


class BillingSql:
    driver: Driver

    async def get_tenant(self, tenant_id: str) -> TenantRecord | None:
        row = await self.driver.fetchone(
            "SELECT id, name, balance_nano, limited, created_at FROM tenants WHERE id = :id",
            {"id": tenant_id})
        if row is None:
            return None
        row["limited"] = bool(row["limited"])
        return TenantRecord(**row)

    async def create_tenant(self, tenant_id: str, name: str | None = None, *,
                            limited: bool = True) -> bool:
        return bool(await self.driver.execute(
            "INSERT INTO tenants (id, name, balance_nano, limited, created_at) VALUES "
            "(:id, :name, 0, :limited, :ts) ON CONFLICT (id) DO NOTHING",
            {"id": tenant_id, "name": name or tenant_id, "limited": int(limited),
             "ts": time.time()}))

    async def add_credits(self, tenant_id: str, nano: int) -> int:
        """Add (or, negative, remove) nano-dollars; creates a limited tenant if missing."""
        await self.driver.batch([
            ("INSERT INTO tenants (id, name, balance_nano, limited, created_at) VALUES "
             "(:id, :id, 0, 1, :ts) ON CONFLICT (id) DO NOTHING",
             {"id": tenant_id, "ts": time.time()}),
            ("UPDATE tenants SET balance_nano = balance_nano + :n WHERE id = :id",
             {"id": tenant_id, "n": nano})])
        tenant = await self.get_tenant(tenant_id)
        assert tenant is not None
        return tenant.balance_nano

    async def charge_usage(self, rec: UsageRecord) -> bool:
        """Insert the record and lower the balance in one transaction; a record whose
        idempotency key exists already changes nothing (returns False).

        The update is tied to this very insert through a fresh charge id, so a duplicate key
        (whose stored row carries another charge id) cannot lower the balance twice.
        """
        rec.created_at = rec.created_at or time.time()
        rec.day = rec.day or _day(rec.created_at)
        params: dict[str, Any] = {k: v for k, v in asdict(rec).items() if k in _USAGE_COLS}
        params["estimated"], params["used_fallback"] = int(rec.estimated), int(rec.used_fallback)
        params["charge_id"] = uuid.uuid4().hex
        cols = ", ".join((*_USAGE_COLS, "charge_id"))
        values = ", ".join(f":{c}" for c in (*_USAGE_COLS, "charge_id"))
        try:
            counts = await self.driver.batch([
                (f"INSERT INTO usage_records ({cols}) VALUES ({values}) "
                 "ON CONFLICT (idempotency_key) DO NOTHING", params),
                ("UPDATE tenants SET balance_nano = balance_nano - :cost_nano WHERE id = "
                 ":tenant_id AND EXISTS (SELECT 1 FROM usage_records WHERE idempotency_key = "
                 ":idempotency_key AND charge_id = :charge_id)", params)])
        except ConflictError:  # the foreign key: no such tenant
            raise UnknownTenantError(rec.tenant_id) from None
        return counts[0] == 1

    async def usage_records(self, *, tenant_id: str | None = None,
                            execution_id: str | None = None) -> list[UsageRecord]:
        where, params = equals(tenant_id=tenant_id, execution_id=execution_id)
        rows = await self.driver.fetchall(
            f"SELECT id, {', '.join(_USAGE_COLS)} FROM usage_records WHERE {where} ORDER BY id",
            params)
        for r in rows:
            r["estimated"], r["used_fallback"] = bool(r["estimated"]), bool(r["used_fallback"])
        return [UsageRecord(**r) for r in rows]

    async def usage_summary(self, *, tenant_id: str | None = None,
                            since_day: str | None = None) -> list[dict[str, Any]]:
        """Tokens, cost and calls by tenant, day and model (backed by (tenant_id, day))."""
        where, params = equals(tenant_id=tenant_id)
        if since_day is not None:
            where += " AND day >= :d"
            params["d"] = since_day
        return await self.driver.fetchall(
            "SELECT tenant_id, day, model, model_type, COUNT(*) AS calls, "
            "SUM(prompt_tokens) AS prompt_tokens, SUM(completion_tokens) AS completion_tokens, "
            "SUM(cost_nano) AS cost_nano, SUM(used_fallback) AS fallbacks, "
            "SUM(estimated) AS estimated FROM usage_records "
            f"WHERE {where} GROUP BY tenant_id, day, model, model_type "
            "ORDER BY day, tenant_id, model", params)

    async def add_llm_failure(self, backend: str, kind: str, error: str,
                              tenant_id: str | None) -> None:
        await self.driver.execute(
            "INSERT INTO llm_failures (ts, backend, kind, error, tenant_id) "
            "VALUES (:ts, :b, :k, :e, :t)",
            {"ts": time.time(), "b": backend, "k": kind, "e": error[:2000], "t": tenant_id})

    async def llm_failures(self, *, since: float = 0.0) -> list[dict[str, Any]]:
        return await self.driver.fetchall(
            "SELECT backend, kind, COUNT(*) AS n, MAX(ts) AS last_ts FROM llm_failures "
            "WHERE ts >= :s GROUP BY backend, kind ORDER BY backend, kind", {"s": since})
