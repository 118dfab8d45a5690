"""Load test of the REST API: sustained requests/s and latency of a submit/read mix.

What is measured (per backend: SQLite and/or PostgreSQL; everything on loopback)
    1. A fresh database. A tenant is created with ``omium tenants create NAME --db URL
       --json``; ``omium serve --no-workers --processes P --port X --db URL`` is started (API
       processes only: executions are queued, never run); ``/health`` is awaited; a small
       workflow (three ``bench.agents:noop`` Python agents in sequence, a JSON Schema on the
       first, so every submission's inputs are validated) is registered with
       ``POST /api/v1/workflows``.
    2. Baseline: the same load generator against ``GET /health`` of the same server (no
       database, no auth): the stack's ceiling on this machine.
    3. Mixed load at a fixed concurrency (default 64 connections, keep-alive): 3 of every 4
       requests are ``POST /api/v1/executions {workflow_id, inputs}`` (inputs unique per
       request), 1 in 4 is ``GET /api/v1/executions/{id}`` of a random execution this
       generator process submitted earlier. The generator is aiohttp (one ``ClientSession``
       per process, uvloop when installed) in G processes (default 2), the concurrency split
       between them; a closed loop: each connection sends its next request when the last
       one is answered. Every request's latency and status is recorded; requests started in
       the warm-up (default 5 s) are left out. Reported: sustained requests/s (measured
       requests / measured window), p50/p95/p99/max, error rate (non-2xx or exception), for
       POST, GET and combined; PASS/FAIL against the targets (on the combined figures):
       >= 1000 req/s, p95 < 500 ms, p99 < 1000 ms, errors < 0.1 %. CPU seconds used by the
       API processes, the PostgreSQL server (when local) and the generator are printed too.
    4. List latency against table size: a second tenant gets executions inserted directly
       (SQLite ``executemany`` / PostgreSQL ``COPY``) to reach 1,000 and then 100,000 rows,
       mostly ``completed``; 10 % queued at 1,000, 300 (0.3 %) at 100,000, spread evenly
       through the tenant's whole history at each size (the hard case for a status
       filter: queued work is usually the newest, found at once); at each
       size, ``GET /api/v1/executions?status=queued&limit=50`` and
       ``GET /api/v1/executions?limit=50`` (first page) are timed (default 300 requests
       each at concurrency 8, after 20 unmeasured). "Flat" = p50 and p99 at the largest
       size each <= max(2 x, + 10 ms) of the same percentile at the smallest. The rows the mixed
       load left (the first tenant's, all queued) stay in the table. PostgreSQL gets
       ``ANALYZE executions`` after each insert (what autovacuum would do shortly); SQLite
       gets nothing (Omium never runs ANALYZE).
    5. The server is stopped (SIGTERM) and the database dropped, even on failure.

    The machine this was written on has 2 cores: the API processes, the generator processes
    and PostgreSQL all share them, so the figures are a floor for the API, not its ceiling
    on a dedicated host (the CPU split is printed to show where the cores went).

How to run (from the repository root)
    python -m bench.api_load                                  # both backends, 60 s each
    python -m bench.api_load --quick                          # ~10 s of load per backend
    python -m bench.api_load --backend sqlite --duration 20
    URL=$(bash scripts/pg.sh start /tmp/pg-apibench)
    python -m bench.api_load --backend postgres --postgres "$URL"
    bash scripts/pg.sh stop /tmp/pg-apibench
    python -m bench.api_load --profile 2000 --backend sqlite  # cProfile the server side

PostgreSQL needs ``--postgres URL`` or ``$OMIUM_TEST_POSTGRES_URL`` (a server URL: a fresh
database is created on it and dropped after). ``--profile N`` runs no load test: it drives N
requests of the same mix through the app in-process (httpx ``ASGITransport``, no sockets)
under cProfile and prints the top costs per request (the SQLite driver thread is profiled
separately; see ``--help``).

The last line printed is a one-line JSON summary.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import platform
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from bench._api_list import list_phase, list_verdict
from bench._api_load_gen import GET, OP_NAMES, POST, run_load
from bench._api_profile import profile_backend
from bench._api_util import (
    Database,
    PgDatabase,
    Server,
    SqliteDatabase,
    api_call,
    create_tenant,
    workflow_definition,
)
from bench._common import PG_ENV, add_postgres_option
from bench._machine import cores, free_port

TARGET_RPS, TARGET_P95_MS, TARGET_P99_MS, TARGET_ERRORS = 1000.0, 500.0, 1000.0, 0.001


# -- one backend, end to end ------------------------------------------------------------------

async def run_backend(db: Database, args: argparse.Namespace) -> dict[str, Any]:
    import aiohttp

    server: Server | None = None
    try:
        await db.open()
        server = Server(db.url, processes=args.processes, port=free_port(),
                        workers=args.workers)
        tenant, key = await asyncio.to_thread(create_tenant, db.url, "apibench", server.cwd)
        await asyncio.to_thread(server.start)
        definition = workflow_definition()
        async with aiohttp.ClientSession(server.base) as session:
            wf = await api_call(session, "POST", "/api/v1/workflows", key, definition, 201)
            probe = await api_call(session, "POST", "/api/v1/executions", key,
                               {"workflow_id": wf["id"],
                                "inputs": {"applicant_id": "probe", "step": 0}}, 202)
            await api_call(session, "GET", f"/api/v1/executions/{probe['execution_id']}", key)
            bad = await session.post("/api/v1/executions", json={
                "workflow_id": wf["id"], "inputs": {"step": 0}},
                headers={"Authorization": f"Bearer {key}"})
            if bad.status != 422:  # the input schema is enforced on submit
                raise RuntimeError(f"invalid inputs were not refused: {bad.status}")
            bad.release()
        common = {"base": server.base, "key": key, "workflow_id": wf["id"],
                  "concurrency": args.concurrency, "gen_processes": args.gen_processes,
                  "warmup_s": args.warmup, "server": server, "db": db}
        log(f"[{db.name}] baseline: GET /health for {args.baseline_duration:g}s "
            f"(+{args.warmup:g}s warm-up) at concurrency {args.concurrency}")
        baseline = await asyncio.to_thread(run_load, mode="health",
                                           duration_s=args.baseline_duration, **common)
        log(f"[{db.name}] mixed load: 3 POST : 1 GET for {args.duration:g}s "
            f"(+{args.warmup:g}s warm-up)")
        done0, t0 = await db.completed(tenant), time.monotonic()
        mixed = await asyncio.to_thread(run_load, mode="mix", duration_s=args.duration,
                                        **common)
        # With workers: what they completed while the mix ran (warm-up included).
        mixed["completed_per_s"] = ((await db.completed(tenant) - done0)
                                    / (time.monotonic() - t0)) if args.workers else None
        after_load = await db.count(tenant)
        lists: list[dict[str, Any]] = []
        if args.list_sizes:
            log(f"[{db.name}] list latency at {', '.join(f'{s:,}' for s in args.list_sizes)} "
                "rows")
            tenant2, key2 = await asyncio.to_thread(create_tenant, db.url, "apibench-list",
                                                    server.cwd)
            async with aiohttp.ClientSession(server.base) as session:
                wf2 = await api_call(session, "POST", "/api/v1/workflows", key2, definition, 201)
                wf2 = await api_call(session, "GET", f"/api/v1/workflows/{wf2['id']}", key2)
            lists = await list_phase(db, server.base, key2, tenant2, wf2, args.list_sizes,
                                     args.list_requests, args.list_concurrency)
        return {"backend": db.name, "baseline": baseline, "mixed": mixed, "lists": lists,
                "executions_after_load": after_load}
    except BaseException:
        if server is not None and server.proc is not None:
            log(f"[{db.name}] server output:\n{server.output()}")
        raise
    finally:
        if server is not None:
            rc = await asyncio.to_thread(server.stop)
            log(f"[{db.name}] server stopped (exit {rc})")
        await db.close()


# -- reporting ----------------------------------------------------------------------------------

def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _f(x: float | None, fmt: str = ".1f") -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, fmt)


def targets(result: dict[str, Any]) -> dict[str, tuple[bool, str]]:
    c = result["mixed"]["ops"]["combined"]
    return {
        "rps": (c["rps"] >= TARGET_RPS, f"{c['rps']:.0f} req/s >= {TARGET_RPS:.0f}"),
        "p95": (c["p95_ms"] < TARGET_P95_MS, f"p95 {c['p95_ms']:.1f} ms < {TARGET_P95_MS:.0f}"),
        "p99": (c["p99_ms"] < TARGET_P99_MS, f"p99 {c['p99_ms']:.1f} ms < {TARGET_P99_MS:.0f}"),
        "errors": (c["error_rate"] < TARGET_ERRORS,
                   f"errors {100 * c['error_rate']:.3f} % < {100 * TARGET_ERRORS:.1f} %"),
    }


def print_backend(result: dict[str, Any]) -> None:
    name = result["backend"]
    base = result["baseline"]["ops"]["combined"]
    mixed = result["mixed"]
    print(f"\n== {name}: mixed load, {mixed['concurrency']} connections from "
          f"{mixed['generator_processes']} generator processes, "
          f"{mixed['window_s']:.1f} s measured ==")
    head = (f"{'request':<22} {'count':>8} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} "
            f"{'p99 ms':>8} {'max ms':>8} {'errors':>8}")
    print(head)
    print("-" * len(head))
    for label, s in [*mixed["ops"].items(), ("baseline GET /health", base)]:
        print(f"{label:<22} {s['requests']:>8} {s['rps']:>8.0f} {s['p50_ms']:>8.1f} "
              f"{s['p95_ms']:>8.1f} {s['p99_ms']:>8.1f} {s['max_ms']:>8.1f} "
              f"{100 * s['error_rate']:>7.2f}%")
    ratio = mixed["ops"]["combined"]["rps"] / base["rps"] if base["rps"] else float("nan")
    print(f"mixed / trivial (GET /health) throughput: {ratio:.2f}")
    if mixed.get("completed_per_s") is not None:
        print(f"workers completed {mixed['completed_per_s']:.0f} executions/s during the mix")
    for phase in ("baseline", "mixed"):
        cpu = result[phase].get("cpu")
        if cpu:
            n = result[phase]["ops"]["combined"]["requests"]
            per = (f", API {1e3 * cpu['api_s'] / n:.2f} ms CPU/request"
                   if cpu["api_s"] is not None and n else "")
            busy = cpu["machine_busy"]
            busy_pct = _f(100 * busy if busy is not None else None, ".0f")
            print(f"CPU during {phase} ({cpu['window_s']:.0f} s): API processes "
                  f"{_f(cpu['api_s'])} s, PostgreSQL {_f(cpu['postgres_s'])} s, machine busy "
                  f"{busy_pct} %{per}; generators {result[phase]['cpu_generator_s']:.1f} s "
                  "(whole phase)")
    if mixed["exceptions"]:
        print(f"client exceptions: {mixed['exceptions']}")
    for sample in mixed["error_samples"]:
        print(f"  e.g. {sample}")
    for label, (ok, text) in targets(result).items():
        print(f"  {'PASS' if ok else 'FAIL'}  {label:<7} {text}")
    if result["lists"]:
        print(f"\n-- {name}: list latency (tenant rows; {result['executions_after_load']:,} "
              "other-tenant rows from the load stay in the table) --")
        head = (f"{'rows':>8} {'queued':>7} {'query':<18} {'p50 ms':>8} {'p95 ms':>8} "
                f"{'p99 ms':>8} {'max ms':>8} {'insert s':>9}")
        print(head)
        print("-" * len(head))
        for r in result["lists"]:
            print(f"{r['rows']:>8,} {r['queued']:>7} {r['query']:<18} {r['p50_ms']:>8.1f} "
                  f"{r['p95_ms']:>8.1f} {r['p99_ms']:>8.1f} {r['max_ms']:>8.1f} "
                  f"{r['insert_s']:>9.2f}")
        for query, ok in list_verdict(result["lists"]).items():
            print(f"  {'PASS' if ok else 'FAIL'}  flat  {query}: p50 and p99 at the largest "
                  "size <= max(2 x, +10 ms) of those at the smallest")


def print_final(results: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    print("\n== summary ==")
    head = (f"{'backend':<9} {'health r/s':>10} {'mixed r/s':>10} {'ratio':>6} {'p50':>7} "
            f"{'p95':>7} {'p99':>7} {'err %':>7}  targets")
    print(head)
    print("-" * (len(head) + 20))
    summary: dict[str, Any] = {
        "bench": "api_load", "duration_s": args.duration, "warmup_s": args.warmup,
        "baseline_duration_s": args.baseline_duration, "concurrency": args.concurrency,
        "api_processes": args.processes, "generator_processes": args.gen_processes,
        "workers": args.workers,
        "cores": cores(), "python": platform.python_version(), "backends": {}}
    for r in results:
        c, h = r["mixed"]["ops"]["combined"], r["baseline"]["ops"]["combined"]
        t = targets(r)
        verdicts = " ".join(f"{k}:{'PASS' if ok else 'FAIL'}" for k, (ok, _) in t.items())
        ratio = c["rps"] / h["rps"] if h["rps"] else float("nan")
        print(f"{r['backend']:<9} {h['rps']:>10.0f} {c['rps']:>10.0f} {ratio:>6.2f} "
              f"{c['p50_ms']:>7.1f} {c['p95_ms']:>7.1f} {c['p99_ms']:>7.1f} "
              f"{100 * c['error_rate']:>7.3f}  {verdicts}")
        ops = r["mixed"]["ops"]
        entry: dict[str, Any] = {
            "health_rps": round(h["rps"], 1), "mixed_rps": round(c["rps"], 1),
            "ratio": round(ratio, 3),
            **{f"{k}_ms": round(c[f"{k}_ms"], 1) for k in ("p50", "p95", "p99")},
            "error_rate": c["error_rate"], "requests": c["requests"],
            "post": {k: round(ops[OP_NAMES[POST]][k], 1) for k in ("rps", "p50_ms", "p95_ms",
                                                                    "p99_ms")},
            "get": ({k: round(ops[OP_NAMES[GET]][k], 1) for k in ("rps", "p50_ms", "p95_ms",
                                                                    "p99_ms")}
                    if OP_NAMES[GET] in ops else None),
            "targets": {k: ok for k, (ok, _) in t.items()},
            "completed_per_s": (round(r["mixed"]["completed_per_s"], 1)
                                if r["mixed"].get("completed_per_s") is not None else None),
            "api_cpu_ms_per_request": (
                round(1e3 * r["mixed"]["cpu"]["api_s"] / c["requests"], 3)
                if r["mixed"].get("cpu", {}).get("api_s") is not None else None)}
        if r["lists"]:
            entry["list_p99_ms"] = {f"{x['query']}@{x['rows']}": round(x["p99_ms"], 1)
                                    for x in r["lists"]}
            entry["list_flat"] = list_verdict(r["lists"])
        summary["backends"][r["backend"]] = entry
    return summary


# -- main -------------------------------------------------------------------------------------

class _DefaultsFormatter(argparse.HelpFormatter):
    """Appends "(default: X)" to options that have a default other than None/False."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default not in (None, False, argparse.SUPPRESS) and "%(default)" not in text:
            text += " (default: %(default)s)"
        return text


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Bounded load test of the REST API on loopback: a 3:1 mix of "
                    "POST /api/v1/executions and GET /api/v1/executions/{id} against "
                    "`omium serve --no-workers`, a GET /health baseline, and list latency at "
                    "1k and 100k rows; on SQLite and/or PostgreSQL.",
        formatter_class=_DefaultsFormatter)
    p.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both",
                   help="'both' skips PostgreSQL when no server URL is given")
    add_postgres_option(p, "; a fresh database is created on it and dropped after")
    p.add_argument("--duration", type=float,
                   help="seconds of measured mixed load per backend (default 60; 10 with "
                        "--quick)")
    p.add_argument("--warmup", type=float,
                   help="seconds of unmeasured load before each measured phase (default 5; 2 "
                        "with --quick)")
    p.add_argument("--baseline-duration", type=float,
                   help="seconds of measured GET /health load per backend (default 20; 5 with "
                        "--quick)")
    p.add_argument("--quick", action="store_true",
                   help="shorter defaults (see above) and at most 200 list requests per query")
    p.add_argument("--concurrency", type=int, default=64,
                   help="open connections (closed loop: one request in flight each)")
    p.add_argument("--gen-processes", type=int, default=2,
                   help="load generator processes (the connections are split between them)")
    p.add_argument("--processes", type=int, default=2,
                   help="API processes (omium serve --processes)")
    p.add_argument("--workers", action="store_true",
                   help="a default omium serve (in-process workers run what is submitted) "
                        "instead of --no-workers; prints the executions completed per second "
                        "during the mix")
    p.add_argument("--list-sizes", default="1000,100000",
                   help="tenant row counts at which list latency is measured ('' = skip)")
    p.add_argument("--list-requests", type=int, default=300,
                   help="timed requests per list query and size")
    p.add_argument("--list-concurrency", type=int, default=8)
    p.add_argument("--json-out", metavar="PATH", help="also write the full results as JSON")
    p.add_argument("--strict", action="store_true",
                   help="exit 1 when a target or a list flatness check fails (otherwise: "
                        "report only)")
    p.add_argument("--profile", type=int, metavar="N", default=0,
                   help="instead of the load test: cProfile N requests of the mix through the "
                        "app in-process (httpx ASGITransport) and print the top costs per "
                        "request; SQLite's driver thread is profiled separately; the client "
                        "(httpx) is in the event-loop profile too")
    p.add_argument("--profile-concurrency", type=int, default=16)
    p.add_argument("--profile-top", type=int, default=30)
    p.add_argument("--profile-out", default="/tmp", help="folder for the .prof files")
    args = p.parse_args(argv)
    for name, full, quick in (("duration", 60.0, 10.0), ("baseline_duration", 20.0, 5.0),
                              ("warmup", 5.0, 2.0)):
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    if args.quick:
        args.list_requests = min(args.list_requests, 200)
    if args.duration <= 0 or args.baseline_duration <= 0 or args.warmup < 0:
        p.error("--duration and --baseline-duration must be > 0, --warmup >= 0")
    args.list_sizes = sorted(int(x) for x in str(args.list_sizes).split(",") if x.strip())
    if args.concurrency < 1 or args.gen_processes < 1 or args.processes < 1:
        p.error("--concurrency, --gen-processes and --processes must be >= 1")
    if any(s < 50 for s in args.list_sizes):
        p.error("--list-sizes: each size must be >= 50 (a full first page)")
    return args


def _databases(args: argparse.Namespace) -> list[Database]:
    dbs: list[Database] = []
    if args.backend in ("sqlite", "both"):
        dbs.append(SqliteDatabase())
    if args.backend in ("postgres", "both"):
        if args.postgres:
            dbs.append(PgDatabase(args.postgres))
        elif args.backend == "postgres":
            raise SystemExit(f"--backend postgres needs --postgres URL or ${PG_ENV}")
        else:
            log(f"PostgreSQL skipped: no --postgres URL and no ${PG_ENV}")
    return dbs


def _terminate(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # SIGTERM: unwind like Ctrl-C, so the server stops, the DB drops


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    dbs = _databases(args)
    if args.profile:
        Path(args.profile_out).mkdir(parents=True, exist_ok=True)
        for db in dbs:
            asyncio.run(profile_backend(db, args.profile, args.profile_concurrency,
                                        args.profile_top, Path(args.profile_out)))
        return 0
    log(f"{cores()} cores shared by {args.processes} API process(es), "
        f"{args.gen_processes} generator process(es)"
        f"{' and PostgreSQL' if any(isinstance(d, PgDatabase) for d in dbs) else ''}")
    results, broken = [], []
    for db in dbs:
        try:
            result = asyncio.run(run_backend(db, args))
        except Exception:  # the other backend still runs; exit status 2 at the end
            log(f"[{db.name}] benchmark failed:\n{traceback.format_exc()}")
            broken.append(db.name)
            continue
        print_backend(result)
        results.append(result)
    if not results:
        return 2
    summary = print_final(results, args)
    summary["failed_backends"] = broken
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"summary": summary, "results": results},
                                                  indent=1, default=str))
    print(json.dumps(summary, separators=(",", ":")))
    failed = any(not ok for r in results for ok, _ in targets(r).values()) or any(
        not ok for r in results if r["lists"] for ok in list_verdict(r["lists"]).values())
    if broken:
        return 2
    return 1 if failed and args.strict else 0


if __name__ == "__main__":
    sys.exit(main())
