"""Tenants and their API keys, for the CLI and the API alike (no FastAPI here).

A key is shown once, when it is made; only its sha256 is stored, with a short clear prefix to
recognise it in listings.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import unicodedata

from omium.errors import OmiumError
from omium.store.base import TenantStore

TENANT_ID_PATTERN = re.compile(r"[a-z0-9_-]+")
PREFIX_LEN = 10  # the part of a key kept in clear, to recognise it in listings


class TenantExistsError(OmiumError):
    def __init__(self, tenant_id: str) -> None:
        self.tenant_id = tenant_id
        super().__init__(f"tenant {tenant_id!r} exists already")


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def generate_key(prefix: str = "om_") -> tuple[str, str, str]:
    """A new key: (the key, shown once; its sha256 hex, stored; its clear prefix)."""
    key = prefix + secrets.token_urlsafe(32)
    return key, hash_key(key), key[:PREFIX_LEN]


def tenant_slug(name: str) -> str:
    """The tenant id for a name: the name itself if it is already ``[a-z0-9_-]+``."""
    if TENANT_ID_PATTERN.fullmatch(name) and len(name) <= 64:
        return name
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9_-]+", "-", ascii_name.lower()).strip("-")[:64].strip("-")
    if not slug:
        raise ValueError(f"cannot make a tenant id from {name!r}: use letters or digits")
    return slug


async def create_tenant_with_key(store: TenantStore, name: str, *,
                                 limited: bool = True) -> tuple[str, str]:
    """Create a tenant and its first API key: (tenant id, key). Refuses an existing id."""
    tenant_id = tenant_slug(name)
    if not await store.create_tenant(tenant_id, name, limited=limited):
        raise TenantExistsError(tenant_id)
    return tenant_id, await add_key(store, tenant_id)


async def add_key(store: TenantStore, tenant_id: str | None, *,
                  admin: bool = False) -> str:
    """A new key for ``tenant_id`` (None: an admin key bound to no tenant), stored hashed."""
    key, key_hash, prefix = generate_key()
    await store.create_api_key(key_hash, prefix, tenant_id, admin=admin)
    return key
