"""The executions page: newest first, filtered, keyset-paged, refreshed live.

It reads what ``GET /api/v1/executions`` reads (``Store.list_executions``, one query a page,
no query per row) plus one ``count_executions`` for the counts per status.
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import Response

from omium.api.cursor import decode_cursor, encode_cursor
from omium.api.dashboard.web import ViewerDep, render, stamp, store_of
from omium.status import STATUSES

router = APIRouter(dependencies=[Depends(stamp)], include_in_schema=False)
PAGE_SIZE = 50
WINDOWS = {"": "any time", "1h": "last hour", "24h": "last 24 h", "7d": "last 7 days",
           "30d": "last 30 days"}
_SPAN = re.compile(r"^(\d{1,6})([mhd])$")
_UNIT_S = {"m": 60, "h": 3600, "d": 86400}


class FilterError(ValueError):
    """A filter that cannot be applied: ``str()`` names the field."""


def parse_since(text: str, now: float) -> float | None:
    """``24h``, ``7d``, ``30m`` back from now, or an ISO date/time (UTC if no zone)."""
    text = text.strip()
    if not text:
        return None
    if (m := _SPAN.match(text)) is not None:
        return now - int(m.group(1)) * _UNIT_S[m.group(2)]
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise FilterError(f"since: {text!r} is neither a span (24h, 7d) nor an ISO date"
                          ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


@dataclass
class Filters:
    status: str = ""
    workflow: str = ""
    since: str = ""
    q: str = ""
    cursor: str = ""

    def store_args(self, now: float) -> dict[str, Any]:
        if self.status and self.status not in STATUSES:
            raise FilterError(f"status: {self.status!r} is not one of {', '.join(STATUSES)}")
        wf = self.workflow.strip()
        # A workflow id is "name@hash"; a bare name matches each version of it.
        return {"workflow_id": wf if "@" in wf else None,
                "workflow_name": wf if wf and "@" not in wf else None,
                "since": parse_since(self.since, now), "id_prefix": self.q.strip() or None}

    def query(self, **override: str) -> str:
        given = {k: v for k, v in {**self.__dict__, **override}.items() if v}
        return urlencode(given)


def _filters(request: Request) -> Filters:
    p = request.query_params
    return Filters(p.get("status", ""), p.get("workflow", ""), p.get("since", ""),
                   p.get("q", ""), p.get("cursor", ""))


async def page_data(request: Request, tenant: str, f: Filters) -> dict[str, Any]:
    """The rows, counts and next cursor of one page; ``error`` names a bad filter."""
    store = store_of(request)
    try:
        args = f.store_args(time.time())
        before = decode_cursor(f.cursor or None)
    except FilterError as bad:
        return {"rows": [], "counts": {}, "next": None, "error": str(bad), "token": ""}
    except HTTPException:
        return {"rows": [], "counts": {}, "next": None, "token": "",
                "error": "cursor: not a cursor this page made"}
    rows = await store.list_executions(status=f.status or None, tenant_id=tenant,
                                       limit=PAGE_SIZE + 1, before=before, **args)
    counts = await store.count_executions(tenant_id=tenant, **args)
    rows, more = rows[:PAGE_SIZE], len(rows) > PAGE_SIZE
    nxt = encode_cursor(rows[-1].created_at, rows[-1].id) if more else None
    # What the live refresh compares: a page that did not change is not sent again.
    token = hashlib.sha256(repr(([(r.id, r.status, r.updated_at) for r in rows],
                                 sorted(counts.items()))).encode()).hexdigest()[:16]
    return {"rows": rows, "counts": counts, "next": nxt, "error": None, "token": token}


@router.get("/executions")
async def executions(request: Request, who: ViewerDep) -> Response:
    f = _filters(request)
    data = await page_data(request, who.tenant_id, f)
    workflows = await store_of(request).list_workflows(who.tenant_id, limit=200)
    names = sorted({w.name for w in workflows})
    return render(request, "executions.html", {
        "who": who, "f": f, "statuses": STATUSES, "windows": WINDOWS, "workflows": names,
        **data}, status_code=422 if data["error"] else 200)


@router.get("/executions/rows")
async def execution_rows(request: Request, who: ViewerDep) -> Response:
    """The live part: the first page's rows and the counts, or 204 when nothing changed."""
    f = _filters(request)
    data = await page_data(request, who.tenant_id, f)
    if data["token"] and data["token"] == request.query_params.get("v"):
        return Response(status_code=204)
    return render(request, "_execution_rows.html", {"who": who, "f": f,
                                                     "statuses": STATUSES, **data})
