"""CLI commands for the LLM layer and billing: llm serve|status, credits, usage."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from dataclasses import asdict
from datetime import date
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from omium._cli_common import DbOption, JsonOption, err, fail, out, run_async
from omium.billing.ledger import Ledger
from omium.billing.money import nano_to_credits, nano_to_dollars
from omium.store import open_store

if TYPE_CHECKING:  # imported in the commands: aiohttp is slow to import for every CLI call
    from omium.llm.config import LLMConfig
    from omium.llm.pricing import PriceTable
    from omium.store.records import UsageSummary

llm_app = typer.Typer(help="Local inference server and backend status.", no_args_is_help=True)
credits_app = typer.Typer(help="Tenant balances (1 credit = $0.01).", no_args_is_help=True)
ConfigOption = Annotated[str | None, typer.Option("--config", envvar="OMIUM_LLM_CONFIG",
                                                  help="LLM backends file (omium-llm.yaml).")]


@llm_app.command("serve")
def serve(host: str = "127.0.0.1", port: int = 8000,
          model: Annotated[str | None, typer.Option(
              help="A model id for vLLM (GPU), or a .gguf file for llama.cpp (CPU).")] = None
          ) -> None:
    """Start a local OpenAI-compatible server: vLLM on a GPU, else llama.cpp with SmolLM2."""
    from omium.contrib.local_llm.serve import (
        LocalServerUnavailable,
        default_log_path,
        plan_local_server,
        start_local_server,
        stop_local_server,
    )

    try:
        plan = plan_local_server(host=host, port=port, model=model)
    except LocalServerUnavailable as e:
        fail(str(e), 1)
    err.print(f"starting {plan.engine}: {' '.join(plan.argv)}", highlight=False)
    try:
        proc = start_local_server(plan)
    except LocalServerUnavailable as e:
        fail(str(e), 1)
    out.print(f"serving {plan.model} at {plan.base_url} (server log: "
              f"{default_log_path(plan)})\n"
              "configure it with:\n"
              f"  backends:\n    - {{name: local, base_url: \"{plan.base_url}\", "
              f"model: {plan.model}, kind: local}}", highlight=False)
    signal.signal(signal.SIGTERM, lambda *_: proc.terminate())
    try:
        raise typer.Exit(proc.wait())
    except KeyboardInterrupt:
        raise typer.Exit(stop_local_server(proc)) from None


async def _probe(cfg: LLMConfig) -> list[tuple[str, float | None, str | None]]:
    from omium.llm.backend import Backend

    async def one(backend: Any) -> tuple[str, float | None, str | None]:
        try:
            return backend.name, await asyncio.wait_for(backend.probe(), 5), None
        except Exception as e:  # any failure is what status should show
            return backend.name, None, f"{type(e).__name__}: {e}"
        finally:
            await backend.close()

    return list(await asyncio.gather(*(one(Backend(b)) for b in cfg.ordered())))


def plan_figures(rows: list[UsageSummary], all_failed: int,
                 prices: PriceTable) -> dict[str, Any]:
    """The plan's success figures from usage rows (one per tenant, day and model)."""
    calls = sum(r.calls for r in rows)
    local = sum(r.calls for r in rows if r.model_type == "local")
    fallbacks = sum(r.fallbacks for r in rows)
    actual = nano_to_dollars(sum(r.cost_nano for r in rows))
    ref = prices.reference
    reference = sum(ref.cost(r.prompt_tokens, r.completion_tokens) for r in rows)
    return {
        "calls": calls,
        "local_share": (local / calls) if calls else None,
        "fallback_success_rate": (fallbacks / (fallbacks + all_failed))
        if fallbacks + all_failed else None,
        "all_backends_failed": all_failed,
        "cost_usd": str(actual),
        "reference_cost_usd": str(reference),
        "reference_model": prices.reference_model,
        "cost_saved": float(1 - actual / reference) if reference else None,
    }


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.1%}"


@llm_app.command("status")
def status(config: ConfigOption = None, db: DbOption = None,
           since: Annotated[str | None, typer.Option(help="First day (YYYY-MM-DD); "
                                                     "default today (UTC).")] = None,
           as_json: JsonOption = False) -> None:
    """Each backend (reachability, latency, failures) and the plan's figures over a window."""
    cfg = run_async(_load(config))
    day = since or time.strftime("%Y-%m-%d", time.gmtime())
    _check_day(day)

    async def go() -> tuple[Any, ...]:
        probes = await _probe(cfg)
        async with open_store(db) as store:
            since_ts = time.mktime(time.strptime(day, "%Y-%m-%d")) - time.timezone
            return (probes, await store.usage_summary(since_day=day),
                    await store.llm_failures(since=since_ts))

    probes, rows, failures = run_async(go())
    all_failed = sum(f.n for f in failures if f.backend == "*")
    figures = plan_figures(rows, all_failed, cfg.prices)
    per_backend: dict[str, int] = {}
    for f in failures:
        per_backend[f.backend] = per_backend.get(f.backend, 0) + f.n
    if as_json:
        print(json.dumps({"since": day, "backends": [
            {"name": n, "reachable": e is None, "latency_ms": None if lat is None
             else round(lat * 1000, 2), "error": e, "failures": per_backend.get(n, 0)}
            for n, lat, e in probes], "figures": figures}))
        return
    table = Table(title=f"LLM backends (failures since {day})")
    for col in ("backend", "kind", "model", "probe", "failures"):
        table.add_column(col)
    kinds = {b.name: b for b in cfg.backends}
    for name, lat, e in probes:
        probe = (Text(f"{lat * 1000:.1f} ms", style="green") if lat is not None
                 else Text(str(e), style="red"))
        table.add_row(name, kinds[name].kind, kinds[name].model, probe,
                      str(per_backend.get(name, 0)))
    out.print(table)
    if not cfg.backends:
        out.print("no backends configured: write omium-llm.yaml (or set OMIUM_LLM_CONFIG, "
                  "or OMIUM_LLM_LOCAL_URL / OMIUM_LLM_HOSTED_URL)", style="yellow")
    out.print("circuit breakers live in each serving process; this shows reachability and "
              "recorded failures.", style="dim")
    out.print(f"calls {figures['calls']}; served locally {_pct(figures['local_share'])} "
              f"(plan >= 80%); fallback success {_pct(figures['fallback_success_rate'])} "
              f"(plan 99.9%); cost saved vs {figures['reference_model']} "
              f"{_pct(figures['cost_saved'])} (plan >= 60%)", highlight=False)


async def _load(config: str | None) -> LLMConfig:
    from omium.llm.config import load_config

    return load_config(config)


def _check_day(day: str) -> None:
    try:
        date.fromisoformat(day)
    except ValueError:
        fail(f"--since: {day!r} is not a date (YYYY-MM-DD)")


@credits_app.command("add")
def credits_add(tenant: str, amount: str, db: DbOption = None,
                as_json: JsonOption = False) -> None:
    """Top a tenant up by AMOUNT credits (exact decimals; creates the tenant if new)."""

    async def go() -> Decimal:
        async with open_store(db) as store:
            return await Ledger(store).add_credits(tenant, amount)

    balance = run_async(go())
    if as_json:
        print(json.dumps({"tenant_id": tenant, "balance_credits": str(balance)}))
    else:
        out.print(f"{tenant}: balance {balance} credits (${balance / 100})", highlight=False)


@credits_app.command("overdraft")
def credits_overdraft(tenant: str, amount: str, db: DbOption = None,
                      as_json: JsonOption = False) -> None:
    """Let a limited tenant's LLM calls take its balance down to -AMOUNT credits (0: never
    below zero, the default)."""

    async def go() -> Decimal:
        async with open_store(db) as store:
            return await Ledger(store).set_overdraft(tenant, amount)

    overdraft = run_async(go())
    if as_json:
        print(json.dumps({"tenant_id": tenant, "overdraft_credits": str(overdraft)}))
    else:
        out.print(f"{tenant}: balance may go down to -{overdraft} credits", highlight=False)


@credits_app.command("balance")
def credits_balance(tenant: str, db: DbOption = None, as_json: JsonOption = False) -> None:
    """A tenant's available balance in credits: less what LLM calls in flight hold."""

    async def go() -> Decimal:
        async with open_store(db) as store:
            return await Ledger(store).balance(tenant)

    balance = run_async(go())
    if as_json:
        print(json.dumps({"tenant_id": tenant, "balance_credits": str(balance)}))
    else:
        out.print(f"{tenant}: {balance} credits", highlight=False)


def usage(tenant: Annotated[str | None, typer.Option(help="Only this tenant.")] = None,
          since: Annotated[str | None, typer.Option(help="First day, YYYY-MM-DD.")] = None,
          db: DbOption = None, as_json: JsonOption = False) -> None:
    """Tokens, cost and credits by day and model."""
    if since is not None:
        _check_day(since)

    async def go() -> list[UsageSummary]:
        async with open_store(db) as store:
            return await store.usage_summary(tenant_id=tenant, since_day=since)

    rows = [{**asdict(r), "cost_usd": str(nano_to_dollars(r.cost_nano)),
             "credits": str(nano_to_credits(r.cost_nano))} for r in run_async(go())]
    if as_json:
        print(json.dumps(rows))
        return
    table = Table(title="LLM usage")
    for col in ("day", "tenant", "model", "type", "calls", "prompt", "completion", "cost $",
                "credits"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["day"], r["tenant_id"], r["model"], r["model_type"], str(r["calls"]),
                      str(r["prompt_tokens"]), str(r["completion_tokens"]), r["cost_usd"],
                      r["credits"])
    out.print(table)
