"""API keys: ``Authorization: Bearer <key>``; only the key's sha256 is stored (making keys and
tenants: ``omium.engine.tenants``).

A verified key is cached in each process for ``Settings.auth_cache_s`` (30 s by default) so
authentication costs no database read per request. **Revocation therefore takes effect after
up to that long** in every process that has recently seen the key (at once in a process that
calls ``Authenticator.forget``). Unknown or revoked keys are never cached: each costs a read.

Admin: an ``api_keys`` row with ``admin = 1``, or the ``OMIUM_ADMIN_KEY`` value itself.
"""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from omium.engine.tenants import hash_key
from omium.store.base import TenantStore


@dataclass(frozen=True)
class Principal:
    tenant_id: str | None  # None: an admin key bound to no tenant
    admin: bool


class Authenticator:
    """Resolves keys to principals, with a bounded in-memory cache of verified keys."""

    def __init__(self, admin_key: str | None = None, *, ttl_s: float = 30.0,
                 max_entries: int = 10_000) -> None:
        self._admin_key = admin_key.encode() if admin_key else None
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        # key hash -> (expiry, principal); insertion order is expiry order (constant TTL).
        self._cache: dict[str, tuple[float, Principal]] = {}

    async def principal(self, store: TenantStore, key: str) -> Principal | None:
        if self._admin_key is not None and hmac.compare_digest(key.encode(), self._admin_key):
            return Principal(None, True)
        key_hash = hash_key(key)
        hit = self._cache.get(key_hash)
        now = time.monotonic()
        if hit is not None:
            if hit[0] > now:
                return hit[1]
            del self._cache[key_hash]
        rec = await store.find_api_key(key_hash)
        if rec is None or rec.revoked_at is not None:
            return None
        found = Principal(rec.tenant_id, rec.admin)
        while len(self._cache) >= self.max_entries:  # drop the soonest to expire
            del self._cache[next(iter(self._cache))]
        self._cache[key_hash] = (now + self.ttl_s, found)
        return found

    def forget(self, key_hash: str) -> None:
        """Drop a cached key (after revoking it) so this process refuses it at once."""
        self._cache.pop(key_hash, None)


_bearer = HTTPBearer(auto_error=False, description="an Omium API key")
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


async def principal(request: Request, creds: Credentials) -> Principal:
    if creds is None or not creds.credentials:
        raise HTTPException(401, "missing API key: send Authorization: Bearer <key>",
                            headers=_CHALLENGE)
    state = request.app.state
    found = await state.auth.principal(state.store, creds.credentials)
    if found is None:
        raise HTTPException(401, "invalid or revoked API key", headers=_CHALLENGE)
    return found


# tenant_id and admin take the credentials themselves rather than Depends(principal): one
# level of FastAPI dependencies fewer on every request (solve_dependencies was 8% of a busy
# server's time under bench.e2e, most of it per dependency, not per request).
async def tenant_id(request: Request, creds: Credentials) -> str:
    who = await principal(request, creds)
    if who.tenant_id is None:
        raise HTTPException(403, "this admin key belongs to no tenant: use a tenant's key")
    return who.tenant_id


async def admin(request: Request, creds: Credentials) -> Principal:
    who = await principal(request, creds)
    if not who.admin:
        raise HTTPException(403, "an admin key is required")
    return who


TenantId = Annotated[str, Depends(tenant_id)]
Admin = Annotated[Principal, Depends(admin)]
