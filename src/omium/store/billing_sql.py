"""``BillingStore`` in SQL: balances, credit holds, usage records, backend failures.

Credit holds: every statement that deletes a hold comes first in its transaction and is
required to delete it (``require=[0]``), so of a settle, a release and an expiry racing for one
hold exactly one gives it back: the others find no row and roll back (PostgreSQL's row lock
makes the loser wait, then see the row gone; SQLite has one writer at a time).
"""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any

from omium.errors import UnknownTenantError
from omium.ids import random_hex
from omium.store._driver import ConflictError, Driver, NoRowsError, Statement, equals
from omium.store._rows import HOLD, LLM_FAILURES, TENANT, USAGE_SUMMARY
from omium.store.records import (
    CreditHold,
    LLMFailureCount,
    TenantRecord,
    UsageRecord,
    UsageSummary,
)

_USAGE_COLS = ("idempotency_key", "tenant_id", "backend", "model", "model_type",
               "prompt_tokens", "completion_tokens", "cost_nano", "latency_ms", "cached_tokens",
               "estimated", "used_fallback", "execution_id", "agent_id", "created_at", "day")


def _day(ts: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(ts))


_USAGE_INSERT = (f"INSERT INTO usage_records ({', '.join((*_USAGE_COLS, 'charge_id'))}) VALUES "
                 f"({', '.join(f':{c}' for c in (*_USAGE_COLS, 'charge_id'))}) "
                 "ON CONFLICT (idempotency_key) DO NOTHING")


def _usage_insert(rec: UsageRecord) -> tuple[Statement, dict[str, Any]]:
    """The record's insert (a no-op on a duplicate key), tagged with a fresh charge id."""
    rec.created_at = rec.created_at or time.time()
    rec.day = rec.day or _day(rec.created_at)
    # Read field by field: dataclasses.asdict deep-copies, and was a third of this call.
    params: dict[str, Any] = {c: getattr(rec, c) for c in _USAGE_COLS}
    params["estimated"], params["used_fallback"] = int(rec.estimated), int(rec.used_fallback)
    params["charge_id"] = random_hex()
    return (_USAGE_INSERT, params), params


_HOLDS = f"SELECT {HOLD.columns} FROM credit_holds"


class BillingSql:
    _driver: Driver

    async def get_tenant(self, tenant_id: str) -> TenantRecord | None:
        row = await self._driver.fetchone(f"SELECT {TENANT.columns} FROM tenants WHERE id = :id",
                                          {"id": tenant_id})
        return None if row is None else TENANT.decode(row)

    async def add_credits(self, tenant_id: str, nano: int) -> int:
        """Add (or, negative, remove) nano-dollars; creates a limited tenant if missing."""
        await self._driver.batch([
            ("INSERT INTO tenants (id, name, balance_nano, limited, created_at) VALUES "
             "(:id, :id, 0, 1, :ts) ON CONFLICT (id) DO NOTHING",
             {"id": tenant_id, "ts": time.time()}),
            ("UPDATE tenants SET balance_nano = balance_nano + :n WHERE id = :id",
             {"id": tenant_id, "n": nano})])
        tenant = await self.get_tenant(tenant_id)
        assert tenant is not None
        return tenant.balance_nano

    async def set_overdraft(self, tenant_id: str, nano: int) -> bool:
        return bool(await self._driver.execute(
            "UPDATE tenants SET overdraft_nano = :n WHERE id = :id", {"id": tenant_id, "n": nano}))

    async def charge_usage(self, rec: UsageRecord) -> bool:
        """Insert the record and lower the balance in one transaction; a record whose
        idempotency key exists already changes nothing (returns False).

        The update is tied to this very insert through a fresh charge id, so a duplicate key
        (whose stored row carries another charge id) cannot lower the balance twice.
        """
        insert, params = _usage_insert(rec)
        try:
            counts = await self._driver.batch([insert, (
                "UPDATE tenants SET balance_nano = balance_nano - :cost_nano WHERE id = "
                ":tenant_id AND EXISTS (SELECT 1 FROM usage_records WHERE idempotency_key = "
                ":idempotency_key AND charge_id = :charge_id)", params)])
        except ConflictError:  # the foreign key: no such tenant
            raise UnknownTenantError(rec.tenant_id) from None
        return counts[0] == 1

    # -- credit holds
    async def reserve_credit(self, hold: CreditHold) -> bool:
        """Take the hold off a limited tenant's balance, only if the balance stays at or above
        minus its overdraft, and record it: one transaction. False (nothing written) if the
        balance cannot cover it, or the tenant is unlimited or unknown."""
        params = asdict(hold)
        try:
            await self._driver.batch([
                # One conditional statement: concurrent reserves queue on the tenant's row and
                # each re-checks the balance the previous one left.
                ("UPDATE tenants SET balance_nano = balance_nano - :amount_nano WHERE id = "
                 ":tenant_id AND limited = 1 AND balance_nano - :amount_nano >= -overdraft_nano",
                 params),
                ("INSERT INTO credit_holds (id, tenant_id, amount_nano, created_at, expires_at) "
                 "VALUES (:id, :tenant_id, :amount_nano, :created_at, :expires_at)", params)],
                require=[0])
        except NoRowsError:
            return False
        return True

    async def settle_usage(self, rec: UsageRecord, hold: CreditHold) -> bool:
        """``charge_usage`` that also gives the hold back, in the same transaction: the
        balance moves by hold - cost. A hold already released (it expired) leaves a plain
        charge. Returns whether the record was new."""
        insert, params = _usage_insert(rec)
        params["hold_id"], params["held"] = hold.id, hold.amount_nano
        try:
            counts = await self._driver.batch([
                ("DELETE FROM credit_holds WHERE id = :hold_id", params), insert,
                # A duplicate key inserts nothing: the hold is given back, nothing is charged.
                ("UPDATE tenants SET balance_nano = balance_nano + :held - COALESCE((SELECT "
                 "cost_nano FROM usage_records WHERE idempotency_key = :idempotency_key AND "
                 "charge_id = :charge_id), 0) WHERE id = :tenant_id", params)], require=[0])
        except NoRowsError:
            return await self.charge_usage(rec)
        except ConflictError:
            raise UnknownTenantError(rec.tenant_id) from None
        return counts[1] == 1

    async def release_hold(self, hold: CreditHold) -> bool:
        """Give a hold back; False if it was settled or released already."""
        try:
            await self._driver.batch([
                ("DELETE FROM credit_holds WHERE id = :id", {"id": hold.id}),
                ("UPDATE tenants SET balance_nano = balance_nano + :n WHERE id = :t",
                 {"n": hold.amount_nano, "t": hold.tenant_id})], require=[0])
        except NoRowsError:
            return False
        return True

    async def release_expired_holds(self, now: float, tenant_id: str | None = None) -> int:
        """Give back the holds that expired before ``now`` (their process died mid-call);
        returns how many this call released."""
        where, params = equals(tenant_id=tenant_id)
        params["now"] = now
        rows = await self._driver.fetchall(f"{_HOLDS} WHERE expires_at < :now AND {where}",
                                           params)
        # One transaction each: a hold settled meanwhile is skipped, not given back twice.
        return sum([await self.release_hold(hold) for hold in HOLD.decode_all(rows)])

    async def credit_holds(self, tenant_id: str) -> list[CreditHold]:
        return HOLD.decode_all(await self._driver.fetchall(
            f"{_HOLDS} WHERE tenant_id = :t ORDER BY created_at, id", {"t": tenant_id}))

    async def usage_summary(self, *, tenant_id: str | None = None,
                            since_day: str | None = None) -> list[UsageSummary]:
        """Tokens, cost and calls by tenant, day and model (backed by (tenant_id, day))."""
        where, params = equals(tenant_id=tenant_id)
        if since_day is not None:
            where += " AND day >= :d"
            params["d"] = since_day
        return USAGE_SUMMARY.decode_all(await self._driver.fetchall(
            "SELECT tenant_id, day, model, model_type, COUNT(*) AS calls, "
            "SUM(prompt_tokens) AS prompt_tokens, SUM(completion_tokens) AS completion_tokens, "
            "SUM(cost_nano) AS cost_nano, SUM(used_fallback) AS fallbacks, "
            "SUM(estimated) AS estimated FROM usage_records "
            f"WHERE {where} GROUP BY tenant_id, day, model, model_type "
            "ORDER BY day, tenant_id, model", params))

    async def add_llm_failure(self, backend: str, kind: str, error: str,
                              tenant_id: str | None) -> None:
        await self._driver.execute(
            "INSERT INTO llm_failures (ts, backend, kind, error, tenant_id) "
            "VALUES (:ts, :b, :k, :e, :t)",
            {"ts": time.time(), "b": backend, "k": kind, "e": error[:2000], "t": tenant_id})

    async def llm_failures(self, *, since: float = 0.0) -> list[LLMFailureCount]:
        return LLM_FAILURES.decode_all(await self._driver.fetchall(
            "SELECT backend, kind, COUNT(*) AS n, MAX(ts) AS last_ts FROM llm_failures "
            "WHERE ts >= :s GROUP BY backend, kind ORDER BY backend, kind", {"s": since}))
