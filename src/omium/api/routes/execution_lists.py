"""One execution's long lists, a page at a time, oldest first: what the detail only starts.

``/history`` is the events table (``/events`` is the live server-sent event stream).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query

from omium.api import detail as shape
from omium.api.auth import TenantId
from omium.api.deps import StoreDep
from omium.api.models import (
    CURSOR_DOC,
    CheckpointPage,
    EventPage,
    HandoffPage,
    StepPage,
    UsagePage,
    VotePage,
)
from omium.store.records import DetailPart

router = APIRouter(tags=["executions"])
_MAX_ROW_ID = 2**63 - 1  # a BIGINT


def encode_row_cursor(row_id: int) -> str:
    return base64.urlsafe_b64encode(f"r{row_id}".encode()).decode().rstrip("=")


def decode_row_cursor(cursor: str | None) -> int:
    """The row id a page ended at (0: from the start); a malformed cursor is a 422."""
    if cursor is None or cursor == "":
        return 0
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        row_id = int(raw[1:]) if raw[:1] == "r" and raw[1:].isdigit() else -1
    except (binascii.Error, UnicodeDecodeError, ValueError):
        row_id = -1
    if not 0 <= row_id <= _MAX_ROW_ID:
        raise HTTPException(422, detail=[{"loc": ["query", "cursor"],
                                          "msg": "not a cursor this API returned",
                                          "type": "value_error"}])
    return row_id


Limit = Annotated[int, Query(ge=1, le=500, description="rows per page")]
Cursor = Annotated[str | None, Query(description=CURSOR_DOC)]


async def _page(store: StoreDep, tenant: str, execution_id: str, part: DetailPart, limit: int,
                cursor: str | None, shape_rows: Callable[[list[Any]], list[dict[str, Any]]]
                ) -> dict[str, Any]:
    recs = await store.execution_rows(execution_id, tenant, part,
                                      after=decode_row_cursor(cursor), limit=limit + 1)
    if recs is None:
        raise HTTPException(404, f"no execution with id {execution_id!r}")
    recs, more = recs[:limit], len(recs) > limit  # one extra row: is there a next page?
    last = recs[-1].id if more else None
    return {"items": shape_rows(recs),
            "next_cursor": None if last is None else encode_row_cursor(last)}


@router.get("/executions/{execution_id}/steps", response_model=StepPage)
async def list_steps(execution_id: str, tenant: TenantId, store: StoreDep,
                     limit: Limit = 100, cursor: Cursor = None) -> dict[str, Any]:
    """Each agent run (one per checkpoint): status, attempt, duration, who served it."""
    return await _page(store, tenant, execution_id, "checkpoints", limit, cursor,
                       shape.steps)


@router.get("/executions/{execution_id}/checkpoints", response_model=CheckpointPage)
async def list_checkpoints(execution_id: str, tenant: TenantId, store: StoreDep,
                           limit: Limit = 100, cursor: Cursor = None) -> dict[str, Any]:
    """Every checkpoint with its output, superseded ones included."""
    return await _page(store, tenant, execution_id, "checkpoints", limit, cursor,
                       shape.checkpoints)


@router.get("/executions/{execution_id}/handoffs", response_model=HandoffPage)
async def list_handoffs(execution_id: str, tenant: TenantId, store: StoreDep,
                        limit: Limit = 100, cursor: Cursor = None) -> dict[str, Any]:
    return await _page(store, tenant, execution_id, "handoffs", limit, cursor,
                       shape.handoffs)


@router.get("/executions/{execution_id}/consensus", response_model=VotePage)
async def list_votes(execution_id: str, tenant: TenantId, store: StoreDep,
                     limit: Limit = 100, cursor: Cursor = None) -> dict[str, Any]:
    return await _page(store, tenant, execution_id, "consensus", limit, cursor, shape.votes)


@router.get("/executions/{execution_id}/history", response_model=EventPage)
async def list_history(execution_id: str, tenant: TenantId, store: StoreDep,
                       limit: Limit = 100, cursor: Cursor = None) -> dict[str, Any]:
    """The recorded events (failures, recoveries, claims, reviews...)."""
    return await _page(store, tenant, execution_id, "events", limit, cursor, shape.events)


@router.get("/executions/{execution_id}/usage", response_model=UsagePage)
async def list_usage(execution_id: str, tenant: TenantId, store: StoreDep,
                     limit: Limit = 100, cursor: Cursor = None) -> dict[str, Any]:
    """Each LLM call's tokens and exact cost (the detail's ``usage`` has the sums)."""
    return await _page(store, tenant, execution_id, "usage", limit, cursor,
                       shape.usage_records)
