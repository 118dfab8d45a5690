"""Workflows: the tenant's registered definitions, each drawn with its recent executions and a
form that starts one: the same ``start_execution`` as ``POST /api/v1/executions``."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from omium.api.dashboard import web
from omium.api.dashboard.drawing import draw_graph
from omium.api.dashboard.web import ActionForm, Viewer, ViewerDep
from omium.api.routes.executions import start_execution
from omium.api.workflow_cache import PreparedWorkflow
from omium.errors import (
    IdempotencyKeyReusedError,
    InputValidationError,
    OmiumError,
    WorkflowValidationError,
)
from omium.store.records import WorkflowRecord

router = APIRouter(dependencies=[Depends(web.stamp)], include_in_schema=False)
LISTED = 500  # workflows read for the list (newest first); versions of one name group
RECENT = 20


def _grouped(rows: list[WorkflowRecord]) -> list[dict[str, Any]]:
    """One entry per name, newest version first (ids are per content: each edit a version)."""
    by_name: dict[str, dict[str, Any]] = {}
    for w in rows:
        entry = by_name.setdefault(w.name, {"latest": w, "versions": []})
        entry["versions"].append(w)
    return list(by_name.values())


def _shape(definition: dict[str, Any]) -> dict[str, Any]:
    agents = definition.get("agents") or []
    return {"order": definition.get("execution_order", "sequential"),
            "agents": len(agents) if isinstance(agents, list) else 0}


@router.get("/workflows")
async def workflows(request: Request, who: ViewerDep) -> Response:
    rows = await web.store_of(request).list_workflows(who.tenant_id, limit=LISTED)
    groups = _grouped(rows)
    plans = request.app.state.plans
    for g in groups:
        g["shape"] = _shape(g["latest"].definition)
        try:  # prepared once per process (the cache), then drawn from memory
            wf = await plans.load(web.store_of(request), who.tenant_id, g["latest"].id)
        except OmiumError:  # no longer valid here: its own page says why
            wf = None
        g["graph"] = draw_graph(wf.plan) if wf is not None else None
    return web.render(request, "workflows.html", {"who": who, "groups": groups})


async def _find(request: Request, who: Viewer, ref: str
                ) -> tuple[WorkflowRecord | None, list[WorkflowRecord]]:
    """A workflow by id (``name@hash``) or by name (its newest version), and every version
    of its name."""
    store = web.store_of(request)
    rows = await store.list_workflows(who.tenant_id, limit=LISTED)
    if "@" in ref:
        rec = await store.get_workflow_record(ref, who.tenant_id)
        name = rec.name if rec is not None else None
    else:
        rec = next((w for w in rows if w.name == ref), None)
        name = ref
    return rec, [w for w in rows if w.name == name]


async def _page(request: Request, who: Viewer, rec: WorkflowRecord,
                versions: list[WorkflowRecord], *, inputs_text: str | None = None,
                errors: list[str] | None = None, status_code: int = 200) -> Response:
    plans = request.app.state.plans
    wf: PreparedWorkflow | None = None
    problems: list[str] = []
    try:
        wf = await plans.load(web.store_of(request), who.tenant_id, rec.id)
    except WorkflowValidationError as bad:
        problems = [f"{p.path}: {p.reason}" for p in bad.problems]
    except OmiumError as bad:
        problems = [str(bad)]
    recent = await web.store_of(request).list_executions(tenant_id=who.tenant_id,
                                                     workflow_id=rec.id, limit=RECENT)
    if inputs_text is None:
        inputs_text = json.dumps(wf.default_inputs if wf is not None else {}, indent=2)
    return web.render(request, "workflow.html", {
        "who": who, "wf": rec, "versions": versions, "shape": _shape(rec.definition),
        "graph": draw_graph(wf.plan) if wf is not None else None, "problems": problems,
        "recent": recent, "inputs_text": inputs_text, "errors": errors or []},
        status_code=status_code)


@router.get("/workflows/{ref}")
async def workflow(request: Request, ref: str, who: ViewerDep) -> Response:
    rec, versions = await _find(request, who, ref)
    if rec is None:
        return web.not_found(request, who, "workflow")
    return await _page(request, who, rec, versions)


def parse_inputs(text: str) -> Any:
    """The start form's JSON (empty: the workflow's default inputs); ``ValueError`` names the
    field and where the JSON breaks."""
    if not text.strip():
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as bad:
        raise ValueError(f"inputs: not valid JSON: {bad.msg} at line {bad.lineno} column "
                         f"{bad.colno}") from None


@router.post("/workflows/{ref}/start")
async def start(request: Request, ref: str, who: ViewerDep, form: ActionForm) -> Response:
    rec, versions = await _find(request, who, ref)
    if rec is None:
        return web.not_found(request, who, "workflow")
    text = form.get("inputs", "")
    try:
        inputs = parse_inputs(text)
        wf = await request.app.state.plans.load(web.store_of(request), who.tenant_id, rec.id)
        if wf is None:
            return web.not_found(request, who, "workflow")
        execution, _ = await start_execution(web.store_of(request), who.tenant_id, wf, inputs)
    except (InputValidationError, WorkflowValidationError) as bad:
        return await _page(request, who, rec, versions, inputs_text=text, status_code=422,
                           errors=[f"{p.path}: {p.reason}" for p in bad.problems])
    except (ValueError, IdempotencyKeyReusedError) as bad:
        return await _page(request, who, rec, versions, inputs_text=text, status_code=422,
                           errors=[str(bad)])
    return web.redirect(request, f"/executions/{execution.id}")
