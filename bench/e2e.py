"""End to end, as a user runs it: N executions POSTed over HTTP to a real ``omium serve``,
timed until every one is ``completed`` (not merely accepted).

What is measured (everything on loopback, the load generator on the same machine)
    1. A fresh database; a tenant from ``omium tenants create NAME --db URL --json``; the
       server started; a workflow of three no-op Python agents (``bench.agents:noop``, an
       input schema on the first: ``bench._api_util.workflow_definition``) registered with
       ``POST /api/v1/workflows``; one warm-up execution submitted and awaited (untimed).
       With ``--history H``, H completed executions of the same tenant and workflow are
       bulk-inserted first (SQLite ``executemany`` / PostgreSQL ``COPY``), older than the run.
    2. A load generator in its own process (aiohttp, C keep-alive connections, default 64)
       POSTs N executions (default 3,000) in a closed loop; the benchmark polls the database
       (direct SQL) until all N are ``completed`` (or one fails, or the timeout passes).
       Reported: accepted/s (N / first request start to last answer), completed/s (N / first
       request start to the last ``finished_at``), p50/p99 submit latency, whether the queue
       drained (every execution completed, none left queued or running), CPU seconds of the
       server, the workers and PostgreSQL.
    Modes, in one run:
       sqlite    the default ``omium serve`` (one API process, in-process workers), SQLite;
       postgres  ``omium serve --no-workers`` + 2 ``omium worker`` processes (CLI defaults)
                 on a fresh PostgreSQL database; also PostgreSQL transactions per agent step:
                 ``pg_stat_database.xact_commit`` of that database before the server starts
                 and after the server and workers have exited (all backends flushed their
                 statistics), less the benchmark's own polling statements, divided by
                 (executions x agents), warm-up included. It counts everything the service
                 did: submits, claims, checkpoints, completions, lease renewals, idle polls;
       dbos      DBOS Transact (``bench/_e2e_dbos.py``, its own process), the same three
                 no-op steps as one workflow, N enqueued on a DBOS queue on a fresh SQLite
                 system database, timed until every result is back; Omium / DBOS printed.
    The servers get OMIUM_ALLOWED_MODULES=bench. Every wait has a timeout; servers, workers
    and generators are stopped and databases dropped, even on failure.

    The machine this was written on has 2 cores: server, workers, generator and PostgreSQL
    share them, so the figures are a floor, and noisy when anything else runs.

How to run (from the repository root)
    python -m bench.e2e                                      # all modes, 3,000 executions
    python -m bench.e2e --executions 500 --skip-dbos --skip-postgres
    python -m bench.e2e --history 100000 --skip-dbos
    python -m bench.e2e --py-spy /tmp/e2e.txt --skip-dbos --skip-postgres
    URL=$(bash scripts/pg.sh start /tmp/pg-e2e); python -m bench.e2e --postgres "$URL"

``--postgres URL`` defaults to ``$OMIUM_TEST_POSTGRES_URL`` (a server URL: a fresh database is
created on it and dropped after); without one the postgres row is skipped with a message.
``--py-spy FILE`` records the sqlite mode's server with py-spy (``--nonblocking``, raw
collapsed stacks to FILE) and prints the top frames by own time. The last line printed is a
one-line JSON summary.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from typing import Any

from bench._api_util import (
    Database,
    PgDatabase,
    Server,
    SqliteDatabase,
    api_call,
    create_tenant,
    execution_rows,
    latency_summary,
    workflow_definition,
)
from bench._common import ROOT, add_postgres_option
from bench._e2e_gen import SubmitResult, Submitter
from bench._machine import busy_fraction, cores, free_port, machine_cpu, tree_cpu_s
from bench._pyspy import PySpy, top_frames
from bench._workers_util import WorkerProcs

AGENTS = 3
POLL_S = 0.25
PG_WORKERS = 2


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# -- watching the database ----------------------------------------------------------------------

_PROGRESS = "SELECT status, COUNT(*) FROM executions WHERE created_at >= {} GROUP BY status"
_LAST_FINISHED = "SELECT MAX(finished_at) FROM executions WHERE created_at >= {}"


class Watch:
    """The benchmark's own read access to the run's executions (those created since
    ``since``), counting its statements (PostgreSQL: they are subtracted from xact_commit)."""

    def __init__(self, db: Database, since: float) -> None:
        self.db, self.since, self.statements = db, since, 0
        self.conn: Any = None

    async def open(self) -> None:
        if isinstance(self.db, PgDatabase):
            import asyncpg

            self.conn = await asyncpg.connect(self.db.url)
        else:
            import sqlite3

            assert isinstance(self.db, SqliteDatabase)
            self.conn = sqlite3.connect(self.db.path, isolation_level=None, timeout=60.0)

    async def _fetch(self, sql: str) -> list[tuple[Any, ...]]:
        self.statements += 1
        if isinstance(self.db, PgDatabase):
            return [tuple(r) for r in await self.conn.fetch(sql.format("$1"), self.since)]
        return list(self.conn.execute(sql.format("?"), (self.since,)).fetchall())

    async def progress(self) -> Counter[str]:
        return Counter({str(s): int(n) for s, n in await self._fetch(_PROGRESS)})

    async def last_finished(self) -> float | None:
        rows = await self._fetch(_LAST_FINISHED)
        return None if not rows or rows[0][0] is None else float(rows[0][0])

    async def close(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(Exception):
                if isinstance(self.db, PgDatabase):
                    await self.conn.close()
                else:
                    self.conn.close()
            self.conn = None


async def xact_counts(db: PgDatabase) -> tuple[int, int]:
    """(xact_commit, xact_rollback) of ``db``'s database, read over the server URL (so the
    read is not counted in it)."""
    import asyncpg

    conn = await asyncpg.connect(db.fresh.server_url)
    try:
        row = await conn.fetchrow("SELECT xact_commit, xact_rollback FROM pg_stat_database "
                                  "WHERE datname = $1", db.fresh.name)
        return int(row[0]), int(row[1])
    finally:
        await conn.close()


async def wait_for(watch: Watch, want: int, timeout_s: float,
                   submitter: Submitter | None = None) -> tuple[Counter[str], bool,
                                                                SubmitResult | None]:
    """Poll until ``want`` executions are completed (True), one failed or the timeout (False);
    the submitter's result when it came back meanwhile."""
    deadline = time.monotonic() + timeout_s
    sent: SubmitResult | None = None
    while True:
        counts = await watch.progress()
        if sent is None and submitter is not None:
            sent = submitter.poll()
            if sent is not None and (sent.failure or len(sent.ids) < submitter.n):
                return counts, False, sent  # some submissions never made it
        if counts["completed"] >= want and (submitter is None or sent is not None):
            return counts, True, sent
        if counts["failed"] or time.monotonic() > deadline:
            return counts, False, sent
        await asyncio.sleep(POLL_S)


# -- one Omium mode, end to end ------------------------------------------------------------------

async def run_omium(db: Database, args: argparse.Namespace, mode: str) -> dict[str, Any]:
    import aiohttp

    server: Server | None = None
    workers: WorkerProcs | None = None
    watch: Watch | None = None
    submitter: Submitter | None = None
    spy: PySpy | None = None
    n = args.executions
    try:
        await db.open()
        server = Server(db.url, processes=1, port=free_port(), workers=mode == "sqlite")
        tenant, key = await asyncio.to_thread(create_tenant, db.url, "e2e", server.cwd)
        xact_before = None
        if isinstance(db, PgDatabase):
            await asyncio.sleep(0.5)  # the CLI's backend has exited and flushed its counters
            xact_before = await xact_counts(db)
        await asyncio.to_thread(server.start)
        if mode == "postgres":
            workers = WorkerProcs(db.url, PG_WORKERS, concurrency=1000, lease_s=10.0,
                                  poll_s=0.2, grace_s=10.0)
            workers.start()
        since = time.time() - 1.0
        definition = workflow_definition(args.agents)
        async with aiohttp.ClientSession(server.base) as session:
            wf = await api_call(session, "POST", "/api/v1/workflows", key, definition, 201)
        if args.history:
            t = time.perf_counter()
            rows = execution_rows(list(range(args.history)), set(), tenant_id=tenant,
                                  workflow_id=wf["id"], name=definition["name"],
                                  definition=definition,
                                  base_ts=since - args.history * 1e-3 - 10.0)
            await db.insert_executions(rows)
            if isinstance(db, PgDatabase):
                await db.analyze()
            log(f"[{mode}] history: {args.history:,} completed executions inserted in "
                f"{time.perf_counter() - t:.1f} s")
        # A new session: a connection idle through a long insert was closed by the server
        # (uvicorn's keep-alive timeout), and aiohttp does not retry a POST on it.
        async with aiohttp.ClientSession(server.base) as session:
            watch = Watch(db, since)
            await watch.open()
            await api_call(session, "POST", "/api/v1/executions", key,
                       {"workflow_id": wf["id"], "inputs": {"applicant_id": "warm", "step": 0}},
                       202)
            counts, ok, _ = await wait_for(watch, 1, 60.0)
            if not ok:
                raise RuntimeError(f"the warm-up execution did not complete: {dict(counts)}")
        if workers is not None and workers.dead():
            raise RuntimeError("a worker process exited")
        if args.py_spy and mode == "sqlite" and server.proc is not None:
            spy = PySpy(args.py_spy)
            spy.start(server.proc.pid)
            await asyncio.sleep(1.0)  # py-spy attaches
        log(f"[{mode}] {n:,} executions from {args.connections} connections")
        cpu0 = (server.cpu_s(), _workers_cpu(workers), _pg_cpu(db), machine_cpu())
        submitter = Submitter(server.base, key, wf["id"], n, args.connections, args.timeout)
        submitter.start()
        counts, drained, sent = await wait_for(watch, n + 1, args.timeout, submitter)
        cpu1 = (server.cpu_s(), _workers_cpu(workers), _pg_cpu(db), machine_cpu())
        if spy is not None:
            spy.stop()
        if sent is None:
            sent = await asyncio.to_thread(submitter.result)
        else:
            submitter.stop()
        if sent.failure:
            raise RuntimeError(f"load generator failed: {sent.failure}")
        last = await watch.last_finished()
        first = min(sent.starts) if sent.starts else float("nan")
        accepted_end = max(s + lat for s, lat in zip(sent.starts, sent.latencies, strict=True))
        ok_lat = [lat for lat, s in zip(sent.latencies, sent.statuses, strict=True) if s == 202]
        done = counts["completed"] - 1  # the warm-up
        left = sum(v for k, v in counts.items() if k in ("queued", "running"))
        result: dict[str, Any] = {
            "mode": mode, "backend": db.name, "executions": n, "history": args.history,
            "connections": args.connections, "accepted": len(sent.ids),
            "completed": done, "drained": drained and left == 0 and done == n,
            "statuses": dict(counts), "errors": sent.errors, "error_samples": sent.samples,
            "accepted_per_s": len(sent.ids) / (accepted_end - first),
            "completed_per_s": (done / (last - first)) if drained and last else None,
            "completion_s": (last - first) if last else None,
            "submit": latency_summary(ok_lat),
            "cpu": {"server_s": _d(cpu0[0], cpu1[0]), "workers_s": _d(cpu0[1], cpu1[1]),
                    "postgres_s": _d(cpu0[2], cpu1[2]), "generator_s": round(sent.cpu_s, 2),
                    "machine_busy": busy_fraction(cpu0[3], cpu1[3])},
        }
        if spy is not None:
            with contextlib.suppress(FileNotFoundError):
                total, frames = top_frames(spy.out)
                result["profile"] = {"file": spy.out, "samples": total, "top_own": frames}
        await watch.close()
        if isinstance(db, PgDatabase):
            if workers is not None:
                workers.stop()
                workers = None
            await asyncio.to_thread(server.stop)
            server = None
            await asyncio.sleep(1.0)  # exited backends flush their statistics
            after = await xact_counts(db)
            assert xact_before is not None
            own = watch.statements + (2 if args.history else 0)
            commits = after[0] - xact_before[0] - own
            result["pg"] = {"xact_commit": commits, "xact_rollback": after[1] - xact_before[1],
                            "xact_per_step": commits / ((n + 1) * AGENTS),
                            "xact_per_execution": commits / (n + 1),
                            "own_statements_subtracted": own}
        return result
    except BaseException:
        if server is not None and server.proc is not None:
            log(f"[{mode}] server output:\n{server.output()}")
        raise
    finally:
        if spy is not None and spy.proc is not None and spy.proc.poll() is None:
            spy.proc.kill()
        if submitter is not None:
            submitter.stop()
        if watch is not None:
            await watch.close()
        if workers is not None:
            for w in workers.stop():
                if w.returncode not in (0, None):
                    log(f"[{mode}] worker exited {w.returncode}: {w.stderr_tail[-500:]}")
        if server is not None:
            rc = await asyncio.to_thread(server.stop)
            log(f"[{mode}] server stopped (exit {rc})")
        await db.close()


def _workers_cpu(workers: WorkerProcs | None) -> float | None:
    if workers is None:
        return None
    values = [tree_cpu_s(p.pid) for p in workers.procs]
    return None if any(v is None for v in values) else sum(v for v in values if v is not None)


def _pg_cpu(db: Database) -> float | None:
    return tree_cpu_s(db.server_pid) if db.server_pid else None


def _d(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else round(b - a, 2)


# -- DBOS Transact -------------------------------------------------------------------------------

def run_dbos(args: argparse.Namespace) -> dict[str, Any] | str:
    """The DBOS row, or why it was skipped."""
    try:
        import dbos  # noqa: F401
    except ImportError as err:
        return f"DBOS Transact is not installed ({err}; pip install dbos)"
    tmp = tempfile.mkdtemp(prefix="omium-e2e-dbos-")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    try:
        done = subprocess.run(
            [sys.executable, "-m", "bench._e2e_dbos", "--executions", str(args.executions),
             "--dir", tmp, "--timeout", str(args.timeout)],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=args.timeout + 120,
            check=False)
    except subprocess.TimeoutExpired:
        return f"DBOS run did not finish in {args.timeout + 120:g} s"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    lines = done.stdout.strip().splitlines()
    try:
        data = json.loads(lines[-1])
    except (IndexError, ValueError):
        return f"DBOS run failed ({done.returncode}): {done.stderr.strip()[-1500:]}"
    if done.returncode != 0:
        return f"DBOS run incomplete ({done.returncode}): {data}; {done.stderr.strip()[-500:]}"
    return dict(data)


# -- reporting -------------------------------------------------------------------------------------

def _f(x: float | None, fmt: str = ".1f") -> str:
    return "-" if x is None else format(x, fmt)


def report(results: list[dict[str, Any]], dbos: dict[str, Any] | str | None,
           args: argparse.Namespace, skipped: dict[str, str]) -> dict[str, Any]:
    print(f"\n== e2e: {args.executions:,} executions of a {AGENTS}-agent no-op workflow "
          f"({args.agents} agents), "
          f"{args.connections} connections, history {args.history:,}, {cores()} cores "
          "(shared: noisy) ==")
    head = (f"{'mode':<34} {'accepted/s':>10} {'completed/s':>11} {'p50 ms':>8} "
            f"{'p99 ms':>8} {'drained':>8} {'server/worker/pg CPU s':>24}")
    print(head)
    print("-" * len(head))
    labels = {"sqlite": "omium serve (workers in), SQLite",
              "postgres": f"serve --no-workers + {PG_WORKERS} workers, PG"}
    for r in results:
        c = r["cpu"]
        cpu = f"{_f(c['server_s'])}/{_f(c['workers_s'])}/{_f(c['postgres_s'])}"
        print(f"{labels[r['mode']]:<34} {r['accepted_per_s']:>10.0f} "
              f"{_f(r['completed_per_s'], '.0f'):>11} {r['submit']['p50_ms']:>8.1f} "
              f"{r['submit']['p99_ms']:>8.1f} {'yes' if r['drained'] else 'NO':>8} {cpu:>24}")
        busy = c["machine_busy"]
        print(f"  load generator {_f(c['generator_s'])} CPU s; machine busy "
              f"{'-' if busy is None else f'{100 * busy:.0f}%'} over the run; "
              f"{r['completion_s'] or 0:.2f} s from the first submit to the last completion")
        if not r["drained"]:
            print(f"  not drained: statuses {r['statuses']}, errors {r['errors']}")
        for s in r["error_samples"]:
            print(f"  e.g. {s}")
        if "pg" in r:
            pg = r["pg"]
            print(f"  PostgreSQL: {pg['xact_commit']:,} commits ({pg['xact_rollback']} "
                  f"rollbacks) = {pg['xact_per_step']:.2f} transactions per agent step, "
                  f"{pg['xact_per_execution']:.2f} per execution")
    if isinstance(dbos, dict):
        print(f"{'DBOS Transact queue, SQLite':<34} {'-':>10} {dbos['completed_per_s']:>11.0f} "
              f"{'-':>8} {'-':>8} {'yes' if dbos['ok'] == dbos['executions'] else 'NO':>8}")
    ratios = {}
    if isinstance(dbos, dict) and dbos.get("completed_per_s"):
        for r in results:
            if r["completed_per_s"]:
                ratios[r["mode"]] = r["completed_per_s"] / dbos["completed_per_s"]
                print(f"Omium {r['mode']} / DBOS completed/s: {ratios[r['mode']]:.2f}")
    for name, why in skipped.items():
        print(f"SKIPPED {name}: {why}")
    for r in results:
        prof = r.get("profile")
        if prof:
            print(f"\n-- py-spy, {r['mode']} server: top frames by own time "
                  f"({prof['samples']:,} samples, {prof['file']}) --")
            for frame, count in prof["top_own"]:
                print(f"{100 * count / max(1, prof['samples']):6.1f}%  {frame}")
    summary = {"bench": "e2e", "executions": args.executions, "connections": args.connections,
               "history": args.history, "cores": cores(), "python": platform.python_version(),
               "modes": {r["mode"]: {
                   "accepted_per_s": round(r["accepted_per_s"], 1),
                   "completed_per_s": (round(r["completed_per_s"], 1)
                                       if r["completed_per_s"] else None),
                   "p50_ms": round(r["submit"]["p50_ms"], 1),
                   "p99_ms": round(r["submit"]["p99_ms"], 1), "drained": r["drained"],
                   **({"xact_per_step": round(r["pg"]["xact_per_step"], 3)}
                      if "pg" in r else {})} for r in results},
               "dbos_completed_per_s": dbos.get("completed_per_s") if isinstance(dbos, dict)
               else None,
               "omium_over_dbos": {k: round(v, 2) for k, v in ratios.items()},
               "skipped": skipped}
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="End to end: N executions POSTed to omium serve, timed until completed.")
    parser.add_argument("--executions", type=int, default=3000, help="timed executions "
                        "(default 3000)")
    parser.add_argument("--connections", type=int, default=64,
                        help="client connections (default 64)")
    parser.add_argument("--history", type=int, default=0, metavar="N",
                        help="completed executions inserted before the run (default 0)")
    parser.add_argument("--timeout", type=float, default=600.0,
                        help="seconds to wait for the N executions per mode (default 600)")
    parser.add_argument("--agents", choices=("sync", "async"), default="sync",
                        help="the no-op agents: plain functions (run in worker threads, the "
                             "default) or coroutines")
    parser.add_argument("--skip-dbos", action="store_true", help="no DBOS Transact row")
    parser.add_argument("--skip-postgres", action="store_true", help="no PostgreSQL row")
    parser.add_argument("--skip-sqlite", action="store_true", help="no SQLite row")
    parser.add_argument("--py-spy", metavar="FILE", default=None,
                        help="record the sqlite server with py-spy (raw collapsed stacks)")
    add_postgres_option(parser, ": a fresh database is created there and dropped after")
    args = parser.parse_args(argv)

    skipped: dict[str, str] = {}
    dbs: list[tuple[str, Database]] = []
    if not args.skip_sqlite:
        dbs.append(("sqlite", SqliteDatabase()))
    if args.skip_postgres:
        skipped["postgres"] = "--skip-postgres"
    elif not args.postgres:
        skipped["postgres"] = "no --postgres URL and no $OMIUM_TEST_POSTGRES_URL"
    else:
        dbs.append(("postgres", PgDatabase(args.postgres)))
    results, broken = [], []
    for mode, db in dbs:
        try:
            results.append(asyncio.run(run_omium(db, args, mode)))
        except Exception:
            log(f"[{mode}] benchmark failed:\n{traceback.format_exc()}")
            broken.append(mode)
    dbos: dict[str, Any] | str | None = None
    if args.skip_dbos:
        skipped["dbos"] = "--skip-dbos"
    else:
        log(f"[dbos] {args.executions:,} workflows through a DBOS queue on SQLite")
        dbos = run_dbos(args)
        if isinstance(dbos, str):
            skipped["dbos"] = dbos
    summary = report(results, dbos, args, skipped)
    summary["failed_modes"] = broken
    print(json.dumps(summary, separators=(",", ":"), default=str))
    return 2 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
