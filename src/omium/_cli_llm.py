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

from omium._cli_common import (
    DbOption,
    JsonOption,
    check_port,
    err,
    fail,
    out,
    plain,
    port_option,
    run_async,
)
from omium.billing.ledger import Ledger
from omium.billing.money import credits_to_nano, nano_to_credits, nano_to_dollars
from omium.errors import UnknownTenantError
from omium.store import open_store

if TYPE_CHECKING:  # imported in the commands that need them, not for every CLI call
    from omium.llm.config import LLMConfig
    from omium.store.base import Store
    from omium.store.records import TenantRecord, UsageSummary

llm_app = typer.Typer(help="Local inference server and backend status.", no_args_is_help=True)
credits_app = typer.Typer(help="Tenant balances (1 credit = $0.01).", no_args_is_help=True)
ConfigOption = Annotated[str | None, typer.Option("--config", envvar="OMIUM_LLM_CONFIG",
                                                  help="LLM backends file (omium-llm.yaml).")]
# llama.cpp's own default port, not the API's 8000: `omium serve` and `omium llm serve` run
# side by side, and examples/loan_approval/omium-llm.yaml points here.
DEFAULT_LLM_PORT = 8080
# Click would read a negative amount ("-5") as an unknown option.
_NEGATIVE_OK = {"ignore_unknown_options": True}


@llm_app.command("serve")
def serve(host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
          port: Annotated[int, port_option("the LLM server")] = DEFAULT_LLM_PORT,
          model: Annotated[str | None, typer.Option(
              help="A model id for vLLM (GPU), or a .gguf file for llama.cpp (CPU).")] = None,
          as_json: JsonOption = False) -> None:
    """Start a local OpenAI-compatible server: vLLM on a GPU, else llama.cpp with SmolLM2."""
    from omium.contrib.local_llm.serve import (
        LocalServerUnavailable,
        default_log_path,
        plan_local_server,
        start_local_server,
        stop_local_server,
    )

    # Where a client reaches the server: a wildcard address on loopback.
    reach = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    host_url = f"[{reach}]" if ":" in reach else reach
    # First: a taken port is bad input whatever is installed, and must not become the
    # child's own failure after a model load.
    check_port(host, port, "pick another --port; or, if an OpenAI-compatible server runs "
               f"there already, configure http://{host_url}:{port}/v1 as a backend")
    try:
        plan = plan_local_server(host=host, port=port, model=model)
    except LocalServerUnavailable as e:
        fail(str(e), 1)
    err.print(f"starting {plan.engine}: {' '.join(plan.argv)}", highlight=False)
    try:
        proc = start_local_server(plan)
    except LocalServerUnavailable as e:
        fail(str(e), 1)
    if as_json:
        print(json.dumps({"engine": plan.engine, "model": plan.model, "base_url": plan.base_url,
                          "log": str(default_log_path(plan)), "pid": proc.pid}), flush=True)
    else:
        out.print(f"serving {plan.model} at {plan.base_url} (server log: "
                  f"{default_log_path(plan)})\n"
                  "configure it with:\n"
                  f"  backends:\n    - {{name: local, base_url: \"{plan.base_url}\", "
                  f"model: {plan.model}, kind: local}}", soft_wrap=True)
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
    from omium.llm.figures import plan_figures  # the router loads with omium.llm

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


def _nano(field: str, amount: str) -> int:
    try:
        return credits_to_nano(amount)
    except ValueError as bad:
        fail(f"{field}: {bad}")


def _dollars(credits: Decimal) -> str:
    return ("-$" if credits < 0 else "$") + plain(abs(credits) / 100)


async def _debit(store: Store, tenant_id: str, amount: str, nano: int) -> tuple[int, bool]:
    """Take ``-nano`` off an existing tenant; a limited one not below minus its overdraft.
    (new balance, limited)."""
    tenant = await store.get_tenant(tenant_id)
    if tenant is None:
        raise ValueError(f"TENANT: no tenant {tenant_id!r} (a debit needs an existing tenant; "
                         "nothing was debited)")
    if not tenant.limited:
        return await store.add_credits(tenant_id, nano), False
    available = credits_to_nano(await Ledger(store).balance(tenant_id))  # expired holds back

    def refuse(balance: int) -> ValueError:
        return ValueError(
            f"AMOUNT: {amount} would take {tenant_id} from {plain(nano_to_credits(balance))} "
            f"to {plain(nano_to_credits(balance + nano))} credits, below its floor of "
            f"{plain(nano_to_credits(-tenant.overdraft_nano))} (`omium credits overdraft "
            f"{tenant_id} N` lowers it); nothing was debited")

    if available + nano < -tenant.overdraft_nano:
        raise refuse(available)
    after = await store.add_credits(tenant_id, nano)  # one atomic update
    if after < -tenant.overdraft_nano:  # calls took holds since the read: undo, refuse
        await store.add_credits(tenant_id, -nano)
        raise refuse(after - nano)
    return after, True


@credits_app.command("add", context_settings=_NEGATIVE_OK)
def credits_add(tenant: Annotated[str, typer.Argument(help="Tenant id.")],
                amount: Annotated[str, typer.Argument(
                    help="Credits, exact decimals: positive to top up (creating the tenant if "
                         "new), negative to debit (e.g. -5; not below the tenant's floor).")],
                db: DbOption = None, as_json: JsonOption = False) -> None:
    """Top a tenant up by AMOUNT credits, or debit it with a negative AMOUNT (a correction)."""
    nano = _nano("AMOUNT", amount)

    async def go() -> tuple[int, bool]:
        async with open_store(db) as store:
            if nano < 0:
                return await _debit(store, tenant, amount, nano)
            after = await store.add_credits(tenant, nano)
            found = await store.get_tenant(tenant)
            return after, found is None or found.limited

    after, limited = run_async(go())
    balance = nano_to_credits(after)
    if as_json:
        print(json.dumps({"tenant_id": tenant, "amount_credits": plain(nano_to_credits(nano)),
                          "balance_credits": plain(balance), "limited": limited}))
        return
    done = (f"debited {plain(nano_to_credits(-nano))} credits; " if nano < 0 else "")
    out.print(f"{tenant}: {done}balance {plain(balance)} credits ({_dollars(balance)})"
              + ("" if limited else "; unlimited (no credit limit)"), soft_wrap=True)


@credits_app.command("overdraft", context_settings=_NEGATIVE_OK)
def credits_overdraft(tenant: str, amount: str, db: DbOption = None,
                      as_json: JsonOption = False) -> None:
    """Let a limited tenant's LLM calls take its balance down to -AMOUNT credits (0: never
    below zero, the default)."""
    _nano("AMOUNT", amount)

    async def go() -> Decimal:
        async with open_store(db) as store:
            return await Ledger(store).set_overdraft(tenant, amount)

    overdraft = run_async(go())
    if as_json:
        print(json.dumps({"tenant_id": tenant, "overdraft_credits": str(overdraft)}))
    else:
        out.print(f"{tenant}: balance may go down to -{overdraft} credits", soft_wrap=True)


@credits_app.command("balance")
def credits_balance(tenant: str, db: DbOption = None, as_json: JsonOption = False) -> None:
    """A tenant's available balance in credits: less what LLM calls in flight hold. An
    unlimited tenant (the CLI's `local`) is never refused; its balance only tracks spending."""

    async def go() -> tuple[Decimal, TenantRecord]:
        async with open_store(db) as store:
            balance = await Ledger(store).balance(tenant)
            found = await store.get_tenant(tenant)
            if found is None:
                raise UnknownTenantError(tenant)
            return balance, found

    balance, found = run_async(go())
    overdraft = nano_to_credits(found.overdraft_nano)
    if as_json:
        print(json.dumps({"tenant_id": tenant, "balance_credits": plain(balance),
                          "limited": found.limited, "overdraft_credits": plain(overdraft)}))
    elif not found.limited:
        out.print(f"{tenant}: unlimited (no credit limit: its calls are never refused for "
                  f"credit); balance {plain(balance)} credits ({_dollars(balance)})",
                  soft_wrap=True)
    else:
        floor = f"; may go down to -{plain(overdraft)}" if overdraft else ""
        out.print(f"{tenant}: {plain(balance)} credits ({_dollars(balance)}){floor}",
                  soft_wrap=True)


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
