"""``TenantStore`` conformance: tenants and API keys, alike on SQLite and PostgreSQL."""

from __future__ import annotations

import time

from omium.store.base import Store


async def test_tenants_are_created_once_and_listed_by_id(store: Store) -> None:
    assert await store.create_tenant("zeta", "Zeta Corp")
    assert not await store.create_tenant("zeta", "Another")
    assert await store.create_tenant("alpha", limited=False)
    tenants = await store.list_tenants()
    assert [(t.id, t.name, t.limited, t.balance_nano) for t in tenants] == [
        ("alpha", "alpha", False, 0), ("local", "local", False, 0),
        ("zeta", "Zeta Corp", True, 0)]


async def test_api_keys_are_found_by_hash_and_revoked_once(store: Store) -> None:
    await store.create_tenant("t")
    await store.create_api_key("hash-1", "om_abc", "t")
    await store.create_api_key("hash-admin", "om_adm", None, admin=True)
    key = await store.find_api_key("hash-1")
    assert key is not None
    assert (key.prefix, key.tenant_id, key.admin, key.revoked_at) == ("om_abc", "t", False, None)
    admin = await store.find_api_key("hash-admin")
    assert admin is not None and (admin.tenant_id, admin.admin) == (None, True)
    assert await store.find_api_key("unknown") is None
    assert await store.revoke_api_key("hash-1")
    assert not await store.revoke_api_key("hash-1")
    assert not await store.revoke_api_key("unknown")
    revoked = await store.find_api_key("hash-1")
    assert revoked is not None and revoked.revoked_at is not None


async def test_a_signed_out_session_stays_ended_until_its_expiry(store: Store) -> None:
    now = time.time()
    assert not await store.session_ended("nonce-a")
    await store.end_session("nonce-a", now + 3600)
    await store.end_session("nonce-a", now + 3600)  # twice: the same one record
    assert await store.session_ended("nonce-a")
    assert not await store.session_ended("nonce-b")
    # An entry past its expiry (its cookie is refused anyway) is dropped by the next one.
    await store.end_session("nonce-old", now - 1)
    await store.end_session("nonce-c", now + 60)
    assert not await store.session_ended("nonce-old")
    assert await store.session_ended("nonce-c") and await store.session_ended("nonce-a")
