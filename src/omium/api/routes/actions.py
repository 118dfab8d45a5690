"""Changing an execution: cancel, resume, review (the rules: ``omium.engine.commands``, which
the CLI calls too). Workers do the running; these record the request (and requeue) and
return at once."""

from __future__ import annotations

from fastapi import APIRouter, Response

from omium.api.auth import TenantId
from omium.api.deps import StoreDep
from omium.api.models import ReviewRequest, StatusOut
from omium.engine import commands
from omium.status import Status

router = APIRouter(tags=["executions"])
_STATUS = {"model": StatusOut}


@router.post("/executions/{execution_id}/cancel", status_code=202, response_model=StatusOut,
             responses={200: _STATUS, 404: {}, 409: {}})
async def cancel(execution_id: str, tenant: TenantId, store: StoreDep,
                 response: Response) -> StatusOut:
    """A queued, failed or awaiting-review execution is cancelled at once (200); a running one
    is flagged ("cancelling", 202) and its worker stops it at its next lease renewal. 409 once
    it has ended (completed or cancelled)."""
    after = await commands.cancel(store, execution_id, tenant)  # unknown: 404; ended: 409
    if after == Status.CANCELLED:
        response.status_code = 200
    return StatusOut(execution_id=execution_id, status=after)


@router.post("/executions/{execution_id}/resume", status_code=202, response_model=StatusOut,
             responses={404: {}, 409: {}})
async def resume(execution_id: str, tenant: TenantId, store: StoreDep) -> StatusOut:
    """A failed execution goes back to the queue (checkpointed agents are reused); others are
    returned as they are."""
    rec, _ = await commands.resume(store, execution_id, tenant, here=False)
    return StatusOut(execution_id=execution_id, status=rec.status)


@router.post("/executions/{execution_id}/review", status_code=202, response_model=StatusOut,
             responses={404: {}, 409: {}})
async def review(execution_id: str, body: ReviewRequest, tenant: TenantId,
                 store: StoreDep) -> StatusOut:
    """Decide an execution awaiting review: the run is requeued (or, rejecting a paused
    failure, fails). 409 unless it is awaiting review."""
    rec, _ = await commands.review(store, execution_id, body.decision, reviewer=body.reviewer,
                                   tenant_id=tenant, here=False, comment=body.comment)
    return StatusOut(execution_id=execution_id, status=rec.status)
