"""LLM and cost: each backend's circuit and failures, the plan's figures over a window, the
tenant's spend per day and per model, and its balance.

The figures are ``omium.llm.figures.plan_figures`` over ``Store.usage_summary``, as ``omium llm
status`` computes them; usage is kept per UTC day, so a window starts at the first whole day
it touches. Circuit breakers live in each serving process: a backend this process has not
called yet shows closed.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from omium.api.dashboard.web import ViewerDep, render, stamp, store_of
from omium.api.detail import credits, dollars
from omium.billing.ledger import Ledger
from omium.billing.money import credits_to_nano
from omium.errors import LLMConfigError
from omium.llm.config import LLMConfig, load_config
from omium.llm.figures import plan_figures
from omium.llm.pricing import PriceTable

router = APIRouter(dependencies=[Depends(stamp)], include_in_schema=False)
WINDOWS = {"24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400, "90d": 90 * 86400}


def _backends(request: Request, config: LLMConfig | None,
              failures: dict[str, int]) -> list[dict[str, Any]]:
    router_ = getattr(request.app.state, "gateway_router", None)
    out = []
    for b in (config.ordered() if config is not None else []):
        breaker = router_.breakers.get(b.name) if router_ is not None else None
        stats = router_.stats.get(b.name) if router_ is not None else None
        out.append({
            "name": b.name, "kind": b.kind, "model": b.model, "base_url": b.base_url,
            "state": breaker.state if breaker is not None else "closed",
            "consecutive": breaker.consecutive_failures if breaker is not None else 0,
            "retry_in_s": breaker.retry_in_s if breaker is not None else 0.0,
            "calls": stats.calls if stats is not None else 0,
            "latency_ms": stats.last_latency_ms if stats is not None else None,
            "last_error": stats.last_error if stats is not None else None,
            "failures": failures.get(b.name, 0)})
    return out


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.1%}"


@router.get("/llm")
async def llm(request: Request, who: ViewerDep) -> Response:
    window = request.query_params.get("window", "24h")
    error = None
    if window not in WINDOWS:
        error = f"window: {window!r} is not one of {', '.join(WINDOWS)}"
        window = "24h"
    since_ts = time.time() - WINDOWS[window]
    since_day = time.strftime("%Y-%m-%d", time.gmtime(since_ts))
    config: LLMConfig | None = None
    try:
        config = load_config()
    except LLMConfigError as bad:
        error = f"LLM config: {bad}"
    store = store_of(request)
    rows = await store.usage_summary(tenant_id=who.tenant_id, since_day=since_day)
    failures = await store.llm_failures(since=since_ts)
    per_backend: dict[str, int] = {}
    for f in failures:
        per_backend[f.backend] = per_backend.get(f.backend, 0) + f.n
    prices = config.prices if config is not None else PriceTable()
    figures = plan_figures(rows, per_backend.get("*", 0), prices)
    days: dict[str, int] = {}
    models: dict[str, int] = {}
    for r in rows:
        days[r.day] = days.get(r.day, 0) + r.cost_nano
        models[r.model] = models.get(r.model, 0) + r.cost_nano
    tenant = await store.get_tenant(who.tenant_id)
    balance = None
    if tenant is not None and tenant.limited:
        # What is left after the holds of calls in flight (expired holds given back).
        balance = credits(credits_to_nano(await Ledger(store).balance(who.tenant_id)))
    return render(request, "llm.html", {
        "who": who, "window": window, "windows": list(WINDOWS), "since_day": since_day,
        "error": error, "backends": _backends(request, config, per_backend),
        "figures": figures, "pct": _pct, "tenant": tenant, "balance": balance,
        "failures": failures, "rows": rows,
        "per_day": {"labels": list(days), "values": [float(dollars(v)) for v in days.values()]},
        "per_model": {"labels": list(models),
                      "values": [float(dollars(v)) for v in models.values()]},
        "day_cost": {d: dollars(v) for d, v in days.items()},
        "model_cost": {m: dollars(v) for m, v in models.items()}},
        status_code=422 if error and error.startswith("window") else 200)
