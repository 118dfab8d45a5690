"""Submitting, reading and listing a tenant's executions."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, Response

from omium import metrics
from omium.api import detail as shape
from omium.api.auth import TenantId
from omium.api.cursor import decode_cursor, encode_cursor
from omium.api.deps import StoreDep
from omium.api.models import (
    CURSOR_DOC,
    DETAIL_ITEMS,
    ExecutionDetail,
    ExecutionPage,
    ExecutionStatus,
    StatusOut,
    SubmitRequest,
)
from omium.api.workflow_cache import PreparedWorkflow, WorkflowCache
from omium.engine.executor import check_inputs
from omium.errors import IdempotencyKeyReusedError
from omium.ids import random_hex
from omium.status import Status
from omium.store.base import Store
from omium.store.records import ExecutionRecord

router = APIRouter(tags=["executions"])


def new_execution_id() -> str:
    return "ex_" + random_hex()


def _body_error(msg: str, *loc: str) -> HTTPException:
    return HTTPException(422, detail=[{"loc": ["body", *loc], "msg": msg,
                                       "type": "value_error"}])


@router.post("/executions", status_code=202, response_model=StatusOut,
             responses={200: {"model": StatusOut,
                              "description": "the idempotency key was used: that execution"},
                        409: {"description": "the idempotency key was used with another "
                                             "workflow or other inputs"}})
async def submit(body: SubmitRequest, tenant: TenantId, request: Request,
                 response: Response) -> StatusOut:
    """Queue an execution for a worker. Validation happens here: an invalid workflow or
    inputs is a 422 naming each field, and nothing is written. An ``idempotency_key`` used
    before returns that execution (200) if workflow and inputs are the same, else 409."""
    # The hottest route: store and plans read here, not as two more FastAPI dependencies.
    store: Store = request.app.state.store
    plans: WorkflowCache = request.app.state.plans
    if (body.workflow_id is None) == (body.workflow is None):
        raise _body_error("give exactly one of workflow_id or workflow")
    if body.workflow is not None:
        wf = await plans.register(store, tenant, body.workflow)
    else:
        assert body.workflow_id is not None
        found = await plans.load(store, tenant, body.workflow_id)
        if found is None:
            raise HTTPException(404, f"no workflow with id {body.workflow_id!r}")
        wf = found
    try:
        rec, created = await start_execution(store, tenant, wf, body.inputs,
                                             idempotency_key=body.idempotency_key)
    except IdempotencyKeyReusedError as err:  # the same key names one request (Stripe's rule)
        raise HTTPException(409, str(err)) from None
    if not created:
        response.status_code = 200
    return StatusOut(execution_id=rec.id, status=rec.status)


async def start_execution(store: Store, tenant: str, wf: PreparedWorkflow, inputs: Any, *,
                          idempotency_key: str | None = None) -> tuple[ExecutionRecord, bool]:
    """Queue an execution of a validated workflow: the one path of the API's submit and the
    dashboard's start form. ``inputs`` None: the workflow's defaults. Invalid inputs raise
    ``InputValidationError`` naming each field, before anything is written; a reused
    idempotency key with other inputs, ``IdempotencyKeyReusedError``. (record, created)."""
    inputs = inputs if inputs is not None else wf.default_inputs
    check_inputs(wf.plan, inputs)
    rec, created = await store.create_execution(ExecutionRecord(
        new_execution_id(), wf.name, wf.definition, inputs, status=Status.QUEUED,
        tenant_id=tenant, workflow_id=wf.workflow_id, idempotency_key=idempotency_key))
    if created:
        metrics.executions_started.labels(wf.plan.framework, tenant).inc()
    return rec, created


@router.get("/executions", response_model=ExecutionPage)
async def list_executions(
        tenant: TenantId, store: StoreDep,
        status: Annotated[ExecutionStatus | None, Query(
            description="only executions in this status")] = None,
        workflow_id: str | None = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        cursor: Annotated[str | None, Query(description=CURSOR_DOC)] = None
) -> dict[str, Any]:
    """Newest first; pass ``next_cursor`` back as ``cursor`` for the next page."""
    rows = await store.list_executions(status=status, tenant_id=tenant, limit=limit + 1,
                                       workflow_id=workflow_id, before=decode_cursor(cursor))
    rows, more = rows[:limit], len(rows) > limit  # one extra row: is there a next page?
    last = rows[-1] if more else None
    return {"items": [shape.summary(r) for r in rows],
            "next_cursor": encode_cursor(last.created_at, last.id) if last else None}


@router.get("/executions/{execution_id}", response_model=ExecutionDetail)
async def get_execution(execution_id: str, tenant: TenantId,
                        request: Request) -> dict[str, Any]:
    """Status, decision, result, failure, LLM usage and lease, with the first
    ``DETAIL_ITEMS`` (100) steps, checkpoints, handoffs, votes, events and usage records,
    their ``totals`` and ``links`` to page through all of each; one round trip."""
    store: Store = request.app.state.store  # the polled route: one dependency fewer
    found = await store.execution_detail(execution_id, tenant, limit=DETAIL_ITEMS)
    if found is None:
        raise HTTPException(404, f"no execution with id {execution_id!r}")
    return shape.execution_detail(found, request.url.path.rstrip("/"))
