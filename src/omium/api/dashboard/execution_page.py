"""One execution: timeline, graph, handoffs, votes, events, LLM calls, lease, inputs and
outputs; and its actions (review, cancel, resume) through ``omium.engine.commands``, the
functions the API and the CLI call."""

from __future__ import annotations

import hashlib
import time
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from omium.agents.runtime import REVIEW_REQUESTED
from omium.api.dashboard import drawing
from omium.api.dashboard.web import (
    ActionForm,
    Viewer,
    ViewerDep,
    not_found,
    redirect,
    render,
    stamp,
    store_of,
)
from omium.api.detail import dollars
from omium.engine import commands
from omium.errors import ExecutionNotFoundError, ExecutionStateError
from omium.status import Status
from omium.store.records import ExecutionDetail
from omium.workflow.model import ConsensusSpec

router = APIRouter(dependencies=[Depends(stamp)], include_in_schema=False)
# The page shows this many rows of each list (the API's detail shows 100 and pages the rest).
PAGE_ITEMS = 500
# Polled while something may still change it without this page doing anything.
LIVE = (Status.QUEUED, Status.RUNNING, Status.AWAITING_REVIEW)
CANCELLABLE = (Status.QUEUED, Status.RUNNING, Status.AWAITING_REVIEW)
RESUMABLE = (Status.FAILED,)  # what POST /api/v1/executions/{id}/resume requeues


def _threshold(spec: ConsensusSpec | None) -> float | None:
    """The agreement a vote needed: unanimous is all of it; a threshold vote compares a
    mean with a cutoff, not an agreement share."""
    if spec is None or spec.strategy == "threshold":
        return None
    return 1.0 if spec.strategy == "unanimous" else spec.threshold


def _token(detail: ExecutionDetail) -> str:
    rec, t = detail.execution, detail.totals
    counts = None if t is None else (t.checkpoints, t.handoffs, t.consensus, t.events,
                                     t.usage)
    raw = repr((rec.status, rec.updated_at, rec.cancel_requested, rec.lease_epoch, counts))
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def _context(request: Request, who: Viewer, detail: ExecutionDetail) -> dict[str, Any]:
    rec = detail.execution
    plans = request.app.state.plans
    wf = plans.for_execution(who.tenant_id, rec.workflow_id,
                             rec.definition if isinstance(rec.definition, dict) else {})
    graph = wf.plan if wf is not None else None
    now = time.time()
    votes = []
    for v in detail.consensus:
        node = graph.nodes.get(v.node_id) if graph is not None else None
        spec = node.consensus if node is not None else None
        votes.append({"rec": v, "rows": drawing.vote_rows(v.result, spec.weights if spec
                                                          else {}),
                      "threshold": _threshold(spec),
                      "strategy": v.result.get("strategy"), "rule": v.result.get("rule")})
    totals = detail.totals
    return {
        "who": who, "rec": rec, "detail": detail, "token": _token(detail),
        "live": rec.status in LIVE,
        "timeline": drawing.timeline(detail, graph, now),
        "graph": drawing.draw_graph(graph, drawing.node_statuses(detail, graph))
        if graph is not None else None,
        "votes": votes,
        "cost": {u.idempotency_key: dollars(u.cost_nano) for u in detail.usage},
        "total_cost": dollars(totals.cost_nano) if totals else None,
        "totals": totals, "page_items": PAGE_ITEMS, "now": now,
        "can_cancel": rec.status in CANCELLABLE and not rec.cancel_requested,
        "can_resume": rec.status in RESUMABLE,
        "can_review": rec.status == Status.AWAITING_REVIEW,
        # The agent's own question (e.g. a LangGraph interrupt()) takes any text as well.
        "asks_answer": rec.status == Status.AWAITING_REVIEW
        and rec.failure_type == REVIEW_REQUESTED,
        "review_prompt": next((e.data.get("prompt") for e in reversed(detail.events)
                               if e.type == "review_requested"), None),
    }


async def _detail(request: Request, who: Viewer, execution_id: str) -> ExecutionDetail | None:
    return await store_of(request).execution_detail(execution_id, who.tenant_id,
                                                    limit=PAGE_ITEMS)


async def _page(request: Request, who: Viewer, execution_id: str, *, error: str | None = None,
                status_code: int = 200) -> Response:
    detail = await _detail(request, who, execution_id)
    if detail is None:
        return not_found(request, who, "execution")
    return render(request, "execution.html", {**_context(request, who, detail),
                                              "error": error}, status_code=status_code)


@router.get("/executions/{execution_id}")
async def execution(request: Request, execution_id: str, who: ViewerDep) -> Response:
    return await _page(request, who, execution_id)


@router.get("/executions/{execution_id}/live")
async def execution_live(request: Request, execution_id: str, who: ViewerDep) -> Response:
    """The page's body again when anything changed (polled while it is live), else 204."""
    detail = await _detail(request, who, execution_id)
    if detail is None:
        return not_found(request, who, "execution")
    if _token(detail) == request.query_params.get("v"):
        return Response(status_code=204)
    return render(request, "_execution_body.html", {**_context(request, who, detail),
                                                    "error": None})


async def _act(request: Request, who: Viewer, execution_id: str, action: Any) -> Response:
    """Run a command; its refusal is shown on the page (409/422), as the API answers it."""
    try:
        await action
    except ExecutionNotFoundError:
        return not_found(request, who, "execution")
    except ExecutionStateError as refused:
        return await _page(request, who, execution_id, error=str(refused), status_code=409)
    except ValueError as bad:  # ReviewDecisionError names the decision field
        return await _page(request, who, execution_id, error=str(bad), status_code=422)
    return redirect(request, f"/executions/{execution_id}")


@router.post("/executions/{execution_id}/review")
async def review(request: Request, execution_id: str, who: ViewerDep,
                 form: ActionForm) -> Response:
    decision = form.get("decision", "")
    reviewer = form.get("reviewer", "").strip()[:255] or None
    comment = form.get("comment", "").strip()[:4000] or None
    if decision == "answer":  # an agent's own question (review_requested): any text
        decision = form.get("answer", "")
    return await _act(request, who, execution_id, commands.review(
        store_of(request), execution_id, decision, reviewer=reviewer, comment=comment,
        tenant_id=who.tenant_id, here=False))


@router.post("/executions/{execution_id}/cancel")
async def cancel(request: Request, execution_id: str, who: ViewerDep,
                 _: ActionForm) -> Response:
    return await _act(request, who, execution_id,
                      commands.cancel(store_of(request), execution_id, who.tenant_id))


@router.post("/executions/{execution_id}/resume")
async def resume(request: Request, execution_id: str, who: ViewerDep,
                 _: ActionForm) -> Response:
    return await _act(request, who, execution_id, commands.resume(
        store_of(request), execution_id, who.tenant_id, here=False))
