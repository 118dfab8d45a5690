"""CLI commands for the service: serve, worker, tenants, keys."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import signal
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

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
    styled,
)
from omium.billing.money import nano_to_credits
from omium.engine.tenants import add_key, create_tenant_with_key, hash_key
from omium.store import database_url, open_store

if TYPE_CHECKING:
    from omium.api.settings import Settings
    from omium.engine.endpoints import AgentEndpoints

tenants_app = typer.Typer(help="Tenants of the service (each with API keys).",
                          no_args_is_help=True)
keys_app = typer.Typer(help="API keys (stored hashed; shown once).", no_args_is_help=True)


# Executions one worker runs at once (omium.engine.worker.DEFAULT_CONCURRENCY; not imported
# here, which would load the engine for every CLI command).
DEFAULT_CONCURRENCY = 1000
# The API's port. `omium llm serve` has its own (8080), so both can run on one machine.
DEFAULT_PORT = 8000
# uvicorn's exit status when the server cannot start (its STARTUP_FAILURE).
_UVICORN_STARTUP_FAILURE = 3
_CONCURRENCY_HELP = ("Executions run at once (agents mostly wait: each in flight costs memory, "
                     "not a core).")


def _agent_threads() -> None:
    """Refuse a bad OMIUM_AGENT_THREADS at start, not at the first sync agent."""
    from omium.agents.python import agent_threads

    try:
        agent_threads()
    except ValueError as bad:
        fail(str(bad))


def worker(db: DbOption = None,
           concurrency: Annotated[int, typer.Option(min=1, help=_CONCURRENCY_HELP)
                                  ] = DEFAULT_CONCURRENCY,
           lease: Annotated[float, typer.Option(help="Lease seconds (renewed every third).")
                            ] = 10.0,
           grace: Annotated[float, typer.Option(help="Seconds to finish work on SIGTERM.")
                            ] = 30.0,
           poll: Annotated[float, typer.Option(help="Idle poll interval, seconds.")] = 0.2,
           max_recoveries: Annotated[int, typer.Option(
               min=0, envvar="OMIUM_MAX_RECOVERIES",
               help="Reclaims after a lost worker before an execution is failed as poison "
                    "(max_recoveries_exceeded); a workflow's max_recoveries wins.")] = 3
           ) -> None:
    """Claim queued executions and run them (scale out: more processes, more machines)."""
    from omium.api.settings import Settings
    from omium.engine.worker import Worker

    _agent_threads()
    try:
        settings = Settings.from_env()
    except ValueError as bad:
        fail(str(bad))
    if settings.gateway_url and not settings.gateway_secret:
        fail("OMIUM_GATEWAY_URL needs OMIUM_GATEWAY_SECRET, the same as the API's, to sign "
             "agents' gateway tokens (or unset OMIUM_GATEWAY_URL: the worker then serves "
             "its own gateway on loopback)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    async def go() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        async with open_store(db) as store:
            w = Worker(store, concurrency=concurrency, lease_s=lease, grace_s=grace,
                       poll_s=poll, max_recoveries=max_recoveries,
                       endpoints=_service_endpoints(settings))
            err.print(f"worker {w.id} on {store.url}: concurrency {concurrency}, "
                      f"lease {lease:g}s", highlight=False)
            await w.run(stop)
            return w.completed

    done = run_async(go())
    err.print(f"worker stopped after {done} execution(s)")


def _service_endpoints(settings: Settings) -> AgentEndpoints | None:
    """Agents' endpoints at the deployment's gateway, when OMIUM_GATEWAY_URL names one."""
    if settings.gateway_url is None or settings.gateway_secret is None:
        return None
    from omium.engine.endpoints import service_endpoints
    from omium.llm.gateway_token import TokenSigner

    return service_endpoints(settings.gateway_url,
                             TokenSigner(settings.gateway_secret.encode()),
                             settings.gateway_token_ttl_s)


def _gateway_env(host: str, port: int) -> None:
    """What every process of this serve shares about the LLM gateway: the URL its workers'
    agents call (this serve, by loopback when it listens on every address) and the secret
    their tokens are signed with (one per start unless the operator set one)."""
    if not os.environ.get("OMIUM_GATEWAY_URL"):
        os.environ["OMIUM_GATEWAY_URL"] = f"{_reach_url(host, port)}/v1"
    if not os.environ.get("OMIUM_GATEWAY_SECRET"):
        os.environ["OMIUM_GATEWAY_SECRET"] = secrets.token_hex(32)


def _reach_url(host: str, port: int) -> str:
    """Where a client on this machine (a browser, its agents) reaches the serve: a wildcard
    address by loopback."""
    reach = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "[::1]"}.get(host, host)
    if ":" in reach and not reach.startswith("["):
        reach = f"[{reach}]"
    return f"http://{reach}:{port}"


def _local_key_file(url: str) -> Path:
    # Next to a SQLite database; in the working directory otherwise.
    if url.startswith("sqlite:///"):
        return Path(url[len("sqlite:///"):]).resolve().parent / ".omium-local-key"
    return Path(".omium-local-key").resolve()


async def _local_key(url: str) -> str:
    """The embedded default's key for tenant "local": reused from a 0600 file if valid."""
    path = _local_key_file(url)
    async with open_store(url) as store:
        if path.is_file():
            key = path.read_text().strip()
            found = await store.find_api_key(hash_key(key))
            if found is not None and found.revoked_at is None:
                return key
        key = await add_key(store, "local")
    path.write_text(key + "\n")
    path.chmod(0o600)
    return key


def serve(host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
          port: Annotated[int, port_option("the API")] = DEFAULT_PORT,
          processes: Annotated[int, typer.Option(help="API processes on one port.")] = 1,
          no_workers: Annotated[bool, typer.Option(
              "--no-workers", help="Run the API alone (workers elsewhere).")] = False,
          worker_concurrency: Annotated[int, typer.Option(min=1, help="In-process workers: "
                                                          + _CONCURRENCY_HELP)
                                        ] = DEFAULT_CONCURRENCY,
          max_recoveries: Annotated[int, typer.Option(
              min=0, envvar="OMIUM_MAX_RECOVERIES",
              help="In-process workers: reclaims after a lost worker before an execution is "
                   "failed as poison.")] = 3,
          db: DbOption = None) -> None:
    """The REST API (with in-process workers unless --no-workers)."""
    import uvicorn

    url = db or database_url()
    os.environ["OMIUM_DATABASE_URL"] = url
    os.environ["OMIUM_SERVE_WORKERS"] = "0" if no_workers else str(worker_concurrency)
    os.environ["OMIUM_MAX_RECOVERIES"] = str(max_recoveries)  # read by each API process
    _gateway_env(host, port)
    if processes > 1 and "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        # Several processes serve /metrics: prometheus-client aggregates their files here.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="omium-prom-")
    from omium.api.settings import Settings
    from omium.api.slowclients import MAX_HEAD_BYTES, PROTOCOL

    try:  # every API process reads the same environment: refuse bad values once, here
        settings = Settings.from_env()
    except ValueError as bad:
        fail(str(bad))
    # Before anything is written or started: uvicorn would log its own error and exit 3,
    # which this CLI documents as "awaiting review".
    check_port(host, port, "another server listens there; stop it, or pick another --port")
    key = run_async(_local_key(url))
    # soft_wrap: the key stays on one line, to copy whole.
    err.print(f"omium API on http://{host}:{port} ({processes} process(es), "
              f"{'no workers' if no_workers else f'{worker_concurrency} worker slots each'})\n"
              f"tenant 'local' key: {key}   (curl -H 'Authorization: Bearer {key}' ...)\n"
              f"dashboard: {_reach_url(host, port)}/ (sign in with that key)\n"
              f"OpenAI-compatible LLM gateway: http://{host}:{port}/v1 (the same keys)",
              soft_wrap=True)
    try:
        # Slow clients: the head deadline lives in PROTOCOL, the body's in the app.
        uvicorn.run("omium.api.app:create_app", factory=True, host=host, port=port,
                    workers=processes, log_level="warning", access_log=False, http=PROTOCOL,
                    timeout_keep_alive=settings.keepalive_s,  # type: ignore[arg-type]
                    limit_concurrency=settings.max_connections,
                    h11_max_incomplete_event_size=MAX_HEAD_BYTES)
    except SystemExit as stopped:
        if stopped.code == _UVICORN_STARTUP_FAILURE:  # e.g. the port taken since the check
            fail("the API did not start (uvicorn's error is above)", 1)
        raise


@tenants_app.command("create")
def tenants_create(name: str, db: DbOption = None, as_json: JsonOption = False) -> None:
    """Create a tenant and its first API key (printed once)."""

    async def go() -> tuple[str, str]:
        async with open_store(db) as store:
            return await create_tenant_with_key(store, name)

    tenant_id, key = run_async(go())
    if as_json:
        print(json.dumps({"tenant_id": tenant_id, "api_key": key}))
    else:
        out.print(f"tenant {tenant_id}\napi key (shown once): {key}", soft_wrap=True)


@tenants_app.command("list")
def tenants_list(db: DbOption = None, as_json: JsonOption = False) -> None:
    """Every tenant: id, name, whether it has a credit limit, and its available balance."""

    async def go() -> list[dict[str, object]]:
        async with open_store(db) as store:
            # As `omium credits balance`: holds whose process died are given back first.
            await store.release_expired_holds(time.time())
            return [{"id": t.id, "name": t.name, "limited": t.limited,
                     "balance_credits": plain(nano_to_credits(t.balance_nano)),
                     "overdraft_credits": plain(nano_to_credits(t.overdraft_nano)),
                     "created_at": t.created_at} for t in await store.list_tenants()]

    rows = run_async(go())
    if as_json:
        print(json.dumps(rows))
        return
    table = Table(title="Tenants")
    for col in ("id", "name", "limit", "balance (credits)"):
        table.add_column(col)
    for r in rows:
        floor = r["overdraft_credits"]
        limit = (f"limited, floor {'-' if floor != '0' else ''}{floor}" if r["limited"]
                 else "unlimited")
        table.add_row(str(r["id"]), str(r["name"]), limit, str(r["balance_credits"]))
    out.print(table)
    if not rows:
        out.print("no tenants: `omium tenants create NAME`")


@keys_app.command("create")
def keys_create(tenant: Annotated[str | None, typer.Argument(
                    help="Tenant id; without one, --admin makes a key bound to no tenant.")
                ] = None,
                admin: Annotated[bool, typer.Option(
                    help="An admin key (tenant management, metrics); with TENANT it also "
                         "acts as that tenant.")] = False,
                db: DbOption = None, as_json: JsonOption = False) -> None:
    """A new API key for TENANT, an admin key for TENANT (--admin), or an admin key bound to
    no tenant (--admin alone); printed once."""
    if tenant is None and not admin:
        fail("TENANT: give a tenant id (or --admin alone, for an admin key bound to no tenant)")

    async def go() -> str:
        async with open_store(db) as store:
            if tenant is not None and await store.get_tenant(tenant) is None:
                raise ValueError(f"TENANT: no tenant {tenant!r} (`omium tenants list`)")
            return await add_key(store, tenant, admin=admin)

    key = run_async(go())
    if as_json:
        print(json.dumps({"tenant_id": tenant, "api_key": key, "admin": admin}))
        return
    what = ("admin key, bound to no tenant" if tenant is None
            else f"admin key for tenant {tenant}" if admin else f"api key for tenant {tenant}")
    out.print(styled(f"{what} (shown once): ", (key, "bold")), soft_wrap=True)
