"""Registering and reading a tenant's workflows."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Query

from omium.api.auth import TenantId
from omium.api.cursor import decode_cursor, encode_cursor
from omium.api.deps import PlansDep, StoreDep
from omium.api.models import WorkflowCreated, WorkflowOut, WorkflowPage

router = APIRouter(tags=["workflows"])


@router.post("/workflows", status_code=201, response_model=WorkflowCreated)
async def register_workflow(definition: Annotated[dict[str, Any], Body()], tenant: TenantId,
                            store: StoreDep, plans: PlansDep) -> WorkflowCreated:
    """Validate a definition (422 names every problem) and store it; the same content
    gives the same id."""
    wf = await plans.register(store, tenant, definition)
    rec = await store.get_workflow_record(wf.workflow_id, tenant)
    assert rec is not None
    return WorkflowCreated(id=rec.id, name=rec.name, created_at=rec.created_at)


@router.get("/workflows", response_model=WorkflowPage)
async def list_workflows(tenant: TenantId, store: StoreDep,
                         limit: Annotated[int, Query(ge=1, le=500)] = 50,
                         cursor: str | None = None) -> WorkflowPage:
    rows = await store.list_workflows(tenant, limit=limit + 1, before=decode_cursor(cursor))
    rows, more = rows[:limit], len(rows) > limit
    items = [WorkflowCreated(id=r.id, name=r.name, created_at=r.created_at) for r in rows]
    last = rows[-1] if more else None
    return WorkflowPage(items=items,
                        next_cursor=encode_cursor(last.created_at, last.id) if last else None)


@router.get("/workflows/{workflow_id}", response_model=WorkflowOut)
async def get_workflow(workflow_id: str, tenant: TenantId, store: StoreDep) -> WorkflowOut:
    rec = await store.get_workflow_record(workflow_id, tenant)
    if rec is None:
        raise HTTPException(404, f"no workflow with id {workflow_id!r}")
    return WorkflowOut(id=rec.id, name=rec.name, created_at=rec.created_at,
                       definition=rec.definition)
