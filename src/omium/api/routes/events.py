"""``GET /executions/{id}/events``: progress as server-sent events, so clients need not poll."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException
from fastapi.responses import StreamingResponse

from omium.api.auth import TenantId
from omium.api.deps import PlansDep, SettingsDep, StoreDep
from omium.api.stream import execution_events

router = APIRouter(tags=["executions"])


@router.get("/executions/{execution_id}/events", response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}},
                             "description": "event: <type>\\ndata: <json> messages"}})
async def stream_events(execution_id: str, tenant: TenantId, store: StoreDep,
                        plans: PlansDep, settings: SettingsDep) -> StreamingResponse:
    """Emits ``status``, ``agent_started``, ``handoff``, ``checkpoint``, ``vote`` and ``event``
    messages as they happen, then ``finished`` (completed, failed, cancelled or awaiting
    review) and closes; closes with ``timeout`` after ``sse_max_s``."""
    first = await store.execution_detail(execution_id, tenant)
    if first is None:
        raise HTTPException(404, f"no execution with id {execution_id!r}")
    rec = first.execution
    wf = plans.for_execution(tenant, rec.workflow_id,
                             rec.definition if isinstance(rec.definition, dict) else {})
    body = execution_events(store, execution_id, tenant, first,
                            wf.deps if wf is not None else None,
                            poll_s=settings.sse_poll_s, max_s=settings.sse_max_s)
    return StreamingResponse(body, media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
