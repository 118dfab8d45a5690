"""Liveness, readiness and Prometheus metrics: no API key needed."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable
from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    generate_latest,
)

from omium import metrics
from omium.api.deps import SettingsDep, StoreDep
from omium.api.metrics_extra import queue_depth
from omium.store.migrate import current_revision
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


@router.get("/health/ready", responses={503: {"description": "a check failed"}})
async def ready(store: StoreDep, settings: SettingsDep) -> JSONResponse:
    """Readiness: the database answers, its schema is at the newest migration, and (where
    this deployment runs workers) at least one worker has sent a heartbeat lately."""
    checks: dict[str, dict[str, Any]] = {}
    ok, value = await _check(store.queue_depth())
    checks["database"] = {"ok": ok, **({"queue_depth": value} if ok else {"error": value})}
    driver = getattr(store, "driver", None)
    if ok and driver is not None:
        ok, rev = await _check(current_revision(driver))
        checks["migrations"] = {"ok": ok and rev == HEAD, "revision": rev if ok else None,
                                "expected": HEAD}
    else:
        checks["migrations"] = {"ok": False, "revision": None, "expected": HEAD}
    if settings.workers_expected:
        ok, live = await _check(store.live_workers(settings.worker_alive_s))
        checks["workers"] = {"ok": ok and live > 0, "live": live if ok else 0}
    for name, check in checks.items():
        metrics.health_check_status.labels(name).set(1 if check["ok"] else 0)
    all_ok = all(c["ok"] for c in checks.values())
    return JSONResponse(status_code=200 if all_ok else 503,
                        content={"status": "ready" if all_ok else "not_ready",
                                 "checks": checks})


@router.get("/metrics", response_class=Response,
            responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}})
async def prometheus(store: StoreDep) -> Response:
    """Prometheus text format; with ``PROMETHEUS_MULTIPROC_DIR`` set, aggregated over all
    worker processes."""
    ok, depth = await _check(store.queue_depth())
    if ok:
        queue_depth.set(depth)
    return Response(generate_latest(_registry()), media_type=CONTENT_TYPE_LATEST)


def _registry() -> CollectorRegistry:
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return REGISTRY
    from prometheus_client import multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return registry
