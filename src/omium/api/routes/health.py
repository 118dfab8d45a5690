"""Liveness and readiness (no key needed) and Prometheus metrics (a metrics token or an
admin key: the metrics name tenants)."""

from __future__ import annotations

import asyncio
import hmac
import os
from collections.abc import Awaitable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    generate_latest,
)
from pydantic import BaseModel

from omium import metrics
from omium.api.deps import SettingsDep, StoreDep
from omium.api.metrics_extra import queue_depth
from omium.api.models import ErrorOut
from omium.store.migrations import HEAD

router = APIRouter(tags=["health"])
CHECK_TIMEOUT_S = 2.0


@router.get("/health")
async def health() -> dict[str, str]:
    """Liveness: the process answers. Touches nothing else."""
    return {"status": "ok"}


async def _check(probe: Awaitable[Any]) -> tuple[bool, Any]:
    try:
        return True, await asyncio.wait_for(probe, CHECK_TIMEOUT_S)
    except Exception as err:  # any failure is "not ready", reported by name
        return False, f"{type(err).__name__}: {err}" if str(err) else type(err).__name__


class Readiness(BaseModel):
    status: str  # "ready" or "not_ready"
    checks: dict[str, dict[str, Any]]  # database, migrations[, workers]: {"ok": bool, ...}


@router.get("/health/ready", response_model=Readiness, responses={
    503: {"model": Readiness, "description": "a check failed"}})
async def ready(store: StoreDep, settings: SettingsDep) -> JSONResponse:
    """Readiness: the database answers, its schema is at the newest migration, and (where
    this deployment runs workers) at least one worker has sent a heartbeat lately."""
    checks = await _readiness(store, settings)
    all_ok = all(c["ok"] for c in checks.values())
    return JSONResponse(status_code=200 if all_ok else 503,
                        content={"status": "ready" if all_ok else "not_ready",
                                 "checks": checks})


async def _readiness(store: Any, settings: Any) -> dict[str, dict[str, Any]]:
    """The readiness checks by name; sets ``omium_health_check_status`` for each."""
    checks: dict[str, dict[str, Any]] = {}
    ok, value = await _check(store.queue_depth())
    checks["database"] = {"ok": ok, **({"queue_depth": value} if ok else {"error": value})}
    checks["migrations"] = {"ok": False, "revision": None, "expected": HEAD}
    if ok:
        ok, rev = await _check(store.schema_revision())
        if ok:
            checks["migrations"].update(ok=rev.up_to_date, revision=rev.current,
                                        expected=rev.expected)
    if settings.workers_expected:
        ok, live = await _check(store.live_workers(settings.worker_alive_s))
        checks["workers"] = {"ok": ok and live > 0, "live": live if ok else 0}
    for name, check in checks.items():
        metrics.health_check_status.labels(name).set(1 if check["ok"] else 0)
    return checks


_metrics_bearer = HTTPBearer(auto_error=False, scheme_name="MetricsToken",
                             description="OMIUM_METRICS_TOKEN, or an admin key")
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


async def metrics_reader(
        request: Request, settings: SettingsDep,
        creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_metrics_bearer)]
) -> None:
    """The metrics token (what Prometheus sends: ``authorization: {credentials: ...}``) or
    any admin key; a tenant's key is a 403, anything else a 401."""
    if creds is None or not creds.credentials:
        raise HTTPException(401, "metrics need Authorization: Bearer <OMIUM_METRICS_TOKEN "
                                 "or an admin key>", headers=_CHALLENGE)
    token = settings.metrics_token
    if token and hmac.compare_digest(creds.credentials.encode(), token.encode()):
        return
    state = request.app.state
    who = await state.auth.principal(state.store, creds.credentials)
    if who is None:
        raise HTTPException(401, "invalid metrics token or API key", headers=_CHALLENGE)
    if not who.admin:
        raise HTTPException(403, "metrics need the metrics token or an admin key")


@router.get("/metrics", response_class=Response, dependencies=[Depends(metrics_reader)],
            responses={200: {"content": {CONTENT_TYPE_LATEST: {}}},
                       401: {"model": ErrorOut, "description": "no or a wrong token"},
                       403: {"model": ErrorOut, "description": "a tenant's API key"}})
async def prometheus(store: StoreDep, settings: SettingsDep) -> Response:
    """Prometheus text format; with ``PROMETHEUS_MULTIPROC_DIR`` set, aggregated over all
    worker processes. Needs ``OMIUM_METRICS_TOKEN`` or an admin key as a Bearer token. Every
    family is listed from the first scrape; the health gauges are the readiness checks, run
    now."""
    checks = await _readiness(store, settings)
    if "queue_depth" in checks["database"]:
        queue_depth.set(checks["database"]["queue_depth"])
    registry = metrics.with_declared_families(_registry(), extra=(queue_depth,))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


def _registry() -> CollectorRegistry:
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return REGISTRY
    from prometheus_client import multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return registry
