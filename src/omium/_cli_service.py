"""CLI commands for the service: serve, worker, tenants, keys."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from omium._cli_common import DbOption, JsonOption, err, fail, out, run_async
from omium.engine.tenants import add_key, create_tenant_with_key, hash_key
from omium.store import database_url, open_store

tenants_app = typer.Typer(help="Tenants of the service (each with API keys).",
                          no_args_is_help=True)
keys_app = typer.Typer(help="API keys (stored hashed; shown once).", no_args_is_help=True)


# Executions one worker runs at once (omium.engine.worker.DEFAULT_CONCURRENCY; not imported
# here, which would load the engine for every CLI command).
DEFAULT_CONCURRENCY = 1000
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
    from omium.engine.worker import Worker

    _agent_threads()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    async def go() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        async with open_store(db) as store:
            w = Worker(store, concurrency=concurrency, lease_s=lease, grace_s=grace,
                       poll_s=poll, max_recoveries=max_recoveries)
            err.print(f"worker {w.id} on {store.url}: concurrency {concurrency}, "
                      f"lease {lease:g}s", highlight=False)
            await w.run(stop)
            return w.completed

    done = run_async(go())
    err.print(f"worker stopped after {done} execution(s)")


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


def serve(host: str = "127.0.0.1", port: int = 8000,
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
    if processes > 1 and "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        # Several processes serve /metrics: prometheus-client aggregates their files here.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="omium-prom-")
    from omium.api.settings import Settings
    from omium.api.slowclients import MAX_HEAD_BYTES, PROTOCOL

    try:  # every API process reads the same environment: refuse bad values once, here
        settings = Settings.from_env()
    except ValueError as bad:
        fail(str(bad))
    key = run_async(_local_key(url))
    err.print(f"omium API on http://{host}:{port} ({processes} process(es), "
              f"{'no workers' if no_workers else f'{worker_concurrency} worker slots each'})\n"
              f"tenant 'local' key: {key}   (curl -H 'Authorization: Bearer {key}' ...)",
              highlight=False)
    # Slow clients: the head deadline lives in PROTOCOL, the body's in the app.
    uvicorn.run("omium.api.app:create_app", factory=True, host=host, port=port,
                workers=processes, log_level="warning", access_log=False, http=PROTOCOL,
                timeout_keep_alive=settings.keepalive_s,  # type: ignore[arg-type]
                limit_concurrency=settings.max_connections,
                h11_max_incomplete_event_size=MAX_HEAD_BYTES)


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
        out.print(f"tenant {tenant_id}\napi key (shown once): {key}", highlight=False)


@keys_app.command("create")
def keys_create(tenant: Annotated[str | None, typer.Argument(help="Tenant id.")] = None,
                admin: Annotated[bool, typer.Option(help="An admin key (tenant management).")
                                 ] = False,
                db: DbOption = None, as_json: JsonOption = False) -> None:
    """A new API key for TENANT (or an admin key with --admin), printed once."""
    if (tenant is None) != admin:
        fail("give a TENANT, or --admin without one")

    async def go() -> str:
        async with open_store(db) as store:
            if tenant is not None and await store.get_tenant(tenant) is None:
                raise ValueError(f"no tenant {tenant!r}")
            return await add_key(store, tenant, admin=admin)

    key = run_async(go())
    if as_json:
        print(json.dumps({"tenant_id": tenant, "api_key": key, "admin": admin}))
    else:
        out.print(f"api key (shown once): {key}", highlight=False)
