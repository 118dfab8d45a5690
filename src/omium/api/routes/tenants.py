"""Tenant management: admin keys only."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException

from omium.api.auth import Admin
from omium.api.deps import StoreDep
from omium.api.detail import credits
from omium.api.models import TenantCreate, TenantKey, TenantOut
from omium.engine.tenants import add_key, create_tenant_with_key

router = APIRouter(tags=["tenants"])


@router.post("/tenants", status_code=201, response_model=TenantKey,
             responses={409: {}})
async def create_tenant(body: TenantCreate, _: Admin, store: StoreDep) -> TenantKey:
    """Create a tenant (its id is a slug of the name) and its first API key, shown once."""
    try:
        tenant_id, key = await create_tenant_with_key(store, body.name, limited=body.limited)
    except ValueError as err:
        raise HTTPException(422, detail=[{"loc": ["body", "name"], "msg": str(err),
                                          "type": "value_error"}]) from None
    return TenantKey(tenant_id=tenant_id, api_key=key)


@router.post("/tenants/{tenant_id}/keys", status_code=201, response_model=TenantKey)
async def create_key(tenant_id: str, _: Admin, store: StoreDep) -> TenantKey:
    """Another API key for a tenant (e.g. to rotate keys), shown once."""
    if await store.get_tenant(tenant_id) is None:
        raise HTTPException(404, f"no tenant {tenant_id!r}")
    return TenantKey(tenant_id=tenant_id, api_key=await add_key(store, tenant_id))


@router.get("/tenants", response_model=list[TenantOut])
async def list_tenants(_: Admin, store: StoreDep) -> list[TenantOut]:
    return [TenantOut(id=t.id, name=t.name, limited=t.limited, created_at=t.created_at,
                      balance_credits=credits(t.balance_nano))
            for t in await store.list_tenants()]
