"""``TenantStore`` in SQL: tenants and their API keys (only a key's hash is stored)."""

from __future__ import annotations

import time

from omium.store._driver import Driver
from omium.store._rows import API_KEY, TENANT
from omium.store.records import ApiKeyRecord, TenantRecord


class TenantSql:
    _driver: Driver

    async def create_tenant(self, tenant_id: str, name: str | None = None, *,
                            limited: bool = True) -> bool:
        return bool(await self._driver.execute(
            "INSERT INTO tenants (id, name, balance_nano, limited, created_at) VALUES "
            "(:id, :name, 0, :limited, :ts) ON CONFLICT (id) DO NOTHING",
            {"id": tenant_id, "name": name or tenant_id, "limited": int(limited),
             "ts": time.time()}))

    async def list_tenants(self) -> list[TenantRecord]:
        return TENANT.decode_all(await self._driver.fetchall(
            f"SELECT {TENANT.columns} FROM tenants ORDER BY id"))

    async def create_api_key(self, key_hash: str, prefix: str, tenant_id: str | None, *,
                             admin: bool = False) -> None:
        await self._driver.execute(
            "INSERT INTO api_keys (key_hash, prefix, tenant_id, admin, created_at) "
            "VALUES (:h, :p, :t, :a, :ts)",
            {"h": key_hash, "p": prefix, "t": tenant_id, "a": int(admin), "ts": time.time()})

    async def find_api_key(self, key_hash: str) -> ApiKeyRecord | None:
        row = await self._driver.fetchone(
            f"SELECT {API_KEY.columns} FROM api_keys WHERE key_hash = :h", {"h": key_hash})
        return None if row is None else API_KEY.decode(row)

    async def revoke_api_key(self, key_hash: str) -> bool:
        return bool(await self._driver.execute(
            "UPDATE api_keys SET revoked_at = :ts WHERE key_hash = :h AND revoked_at IS NULL",
            {"h": key_hash, "ts": time.time()}))

    async def end_session(self, nonce: str, expires_at: float) -> None:
        await self._driver.batch([
            ("DELETE FROM dashboard_signouts WHERE expires_at < :now", {"now": time.time()}),
            ("INSERT INTO dashboard_signouts (nonce, expires_at) VALUES (:n, :x) "
             "ON CONFLICT (nonce) DO NOTHING", {"n": nonce, "x": expires_at})])

    async def session_ended(self, nonce: str) -> bool:
        return await self._driver.fetchone(
            "SELECT 1 AS one FROM dashboard_signouts WHERE nonce = :n", {"n": nonce}) is not None
