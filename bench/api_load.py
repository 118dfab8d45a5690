"""Load test of the REST API: sustained requests/s and latency of a submit/read mix.

What is measured (per backend: SQLite and/or PostgreSQL; everything on loopback)
    1. A fresh database. A tenant is created with ``omium tenants create NAME --db URL
       --json``; ``omium serve --no-workers --processes P --port X --db URL`` is started (API
       processes only: executions are queued, never run); ``/health`` is awaited; a small
       workflow (three ``bench._agents:noop`` Python agents in sequence, a JSON Schema on the
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
    python bench/api_load.py                                  # both backends, 60 s each
    python bench/api_load.py --quick                          # ~10 s of load per backend
    python bench/api_load.py --backend sqlite --duration 20
    URL=$(bash scripts/pg.sh start /tmp/pg-apibench)
    python bench/api_load.py --backend postgres --postgres "$URL"
    bash scripts/pg.sh stop /tmp/pg-apibench
    python bench/api_load.py --profile 2000 --backend sqlite  # cProfile the server side

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
import itertools
import json
import math
import multiprocessing as mp
import os
import platform
import random
import signal
import sys
import threading
import time
import traceback
from array import array
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench._api_util import (  # noqa: E402
    PG_ENV,
    Database,
    PgDatabase,
    Server,
    SqliteDatabase,
    create_tenant,
    execution_rows,
    latency_summary,
    spread,
    workflow_definition,
)
from bench._machine import busy_fraction, cores, free_port, machine_cpu, tree_cpu_s  # noqa: E402

POST, GET, HEALTH = 0, 1, 2
OP_NAMES = {POST: "POST /executions", GET: "GET /executions/{id}", HEALTH: "GET /health"}
TARGET_RPS, TARGET_P95_MS, TARGET_P99_MS, TARGET_ERRORS = 1000.0, 500.0, 1000.0, 0.001
ERROR_SAMPLES = 5


# -- the load generator: one process ------------------------------------------------------

@dataclass
class GenSpec:
    base: str
    key: str
    workflow_id: str
    mode: str  # "mix" | "health"
    concurrency: int
    warmup_s: float
    duration_s: float
    index: int


@dataclass
class GenResult:
    index: int
    measure_from: float  # time.monotonic() (system-wide on Linux: comparable across processes)
    stop_at: float
    ops: array = field(default_factory=lambda: array("b"))
    starts: array = field(default_factory=lambda: array("d"))
    latencies: array = field(default_factory=lambda: array("d"))
    statuses: array = field(default_factory=lambda: array("h"))  # -1: an exception
    errors: dict[str, int] = field(default_factory=dict)
    samples: list[str] = field(default_factory=list)  # the first non-2xx answers
    cpu_s: float = 0.0  # this process, whole run (all threads)
    failure: str | None = None


async def _generate(spec: GenSpec, barrier: Any) -> GenResult:
    import aiohttp

    connector = aiohttp.TCPConnector(limit=spec.concurrency)
    headers = {"Authorization": f"Bearer {spec.key}"}
    async with aiohttp.ClientSession(spec.base, connector=connector, headers=headers,
                                     timeout=aiohttp.ClientTimeout(total=60)) as session:
        barrier.wait(timeout=120)  # all generator processes start together
        t0 = time.monotonic()
        res = GenResult(spec.index, t0 + spec.warmup_s, t0 + spec.warmup_s + spec.duration_s)
        ids: list[str] = []
        counter = itertools.count()
        rnd = random.Random(spec.index)
        json_header = {"Content-Type": "application/json"}
        errors: Counter[str] = Counter()
        record = (res.ops.append, res.starts.append, res.latencies.append,
                  res.statuses.append)

        async def connection() -> None:
            while True:
                started = time.monotonic()
                if started >= res.stop_at:
                    return
                n = next(counter)
                if spec.mode == "health":
                    op = HEALTH
                elif n % 4 == 3 and ids:
                    op = GET
                else:
                    op = POST
                payload = b""
                try:
                    if op == POST:
                        body = json.dumps({"workflow_id": spec.workflow_id, "inputs": {
                            "applicant_id": f"A-{spec.index}-{n}", "step": 0}}).encode()
                        async with session.post("/api/v1/executions", data=body,
                                                headers=json_header) as r:
                            payload, status = await r.read(), r.status
                        if status == 202:
                            ids.append(json.loads(payload)["execution_id"])
                    elif op == GET:
                        path = "/api/v1/executions/" + ids[rnd.randrange(len(ids))]
                        async with session.get(path) as r:
                            payload, status = await r.read(), r.status
                    else:
                        async with session.get("/health") as r:
                            payload, status = await r.read(), r.status
                except Exception as err:  # counted as an error, never fatal
                    status = -1
                    errors[type(err).__name__] += 1
                elapsed = time.monotonic() - started
                if started >= res.measure_from:
                    for add, value in zip(record, (op, started, elapsed, status), strict=True):
                        add(value)
                if not 200 <= status < 300:
                    if status > 0 and len(res.samples) < ERROR_SAMPLES:
                        res.samples.append(f"{OP_NAMES[op]} -> {status}: {payload[:300]!r}")
                    if status < 0:
                        await asyncio.sleep(0.05)  # a refused connection must not spin

        await asyncio.gather(*(connection() for _ in range(spec.concurrency)))
        res.errors = dict(errors)
        return res


def _generator_main(spec: GenSpec, barrier: Any, queue: Any) -> None:
    """Entry point of one generator process: runs, then puts its GenResult on the queue."""
    started = time.process_time()
    try:
        try:
            import uvloop

            result = uvloop.run(_generate(spec, barrier))
        except ImportError:
            result = asyncio.run(_generate(spec, barrier))
    except BaseException as err:  # reported to the parent, which fails the phase
        barrier.abort()  # the parent and the other generators stop waiting
        result = GenResult(spec.index, 0.0, 0.0, failure=f"{type(err).__name__}: {err}")
    result.cpu_s = time.process_time() - started
    queue.put(result)


# -- a load phase: G generator processes, merged --------------------------------------------

@dataclass
class Probe:
    """CPU counters sampled around a phase (None where not measurable)."""

    server: Server | None
    db: Database | None
    api_cpu: float | None = None
    db_cpu: float | None = None
    machine: tuple[int, int] | None = None
    wall: float = 0.0

    def sample(self) -> Probe:
        return Probe(self.server, self.db,
                     self.server.cpu_s() if self.server else None,
                     tree_cpu_s(self.db.server_pid) if self.db and self.db.server_pid else None,
                     machine_cpu(), time.monotonic())


def _diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else b - a


def run_load(*, base: str, key: str, workflow_id: str, mode: str, concurrency: int,
             gen_processes: int, warmup_s: float, duration_s: float,
             server: Server | None = None, db: Database | None = None) -> dict[str, Any]:
    """One closed-loop load phase; returns its merged statistics."""
    ctx = mp.get_context("spawn")
    gen_processes = max(1, min(gen_processes, concurrency))
    barrier, queue = ctx.Barrier(gen_processes + 1), ctx.Queue()
    shares = [concurrency // gen_processes + (1 if i < concurrency % gen_processes else 0)
              for i in range(gen_processes)]
    procs = [ctx.Process(target=_generator_main, daemon=True, args=(
        GenSpec(base, key, workflow_id, mode, share, warmup_s, duration_s, i), barrier, queue))
        for i, share in enumerate(shares)]
    for p in procs:
        p.start()
    results: list[GenResult] = []
    probe = Probe(server, db)
    before = after = None
    try:
        try:
            barrier.wait(timeout=180)  # the parent is a party: it knows when load starts
            t0 = time.monotonic()
            time.sleep(warmup_s)
            before = probe.sample()
            time.sleep(max(0.0, t0 + warmup_s + duration_s - time.monotonic()))
            after = probe.sample()
        except threading.BrokenBarrierError:
            pass  # a generator failed before starting: its result says why
        for _ in procs:
            results.append(queue.get(timeout=180))
    finally:
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
    failed = [r.failure for r in results if r.failure]
    if failed:
        raise RuntimeError(f"load generator failed: {failed[0]}")
    out = merge(results)
    if before is not None and after is not None:
        span = after.wall - before.wall
        out["cpu"] = {"window_s": round(span, 2),
                      "api_s": _diff(before.api_cpu, after.api_cpu),
                      "postgres_s": _diff(before.db_cpu, after.db_cpu),
                      "machine_busy": busy_fraction(before.machine, after.machine)}
    out["cpu_generator_s"] = round(sum(r.cpu_s for r in results), 2)
    out["concurrency"], out["generator_processes"] = concurrency, gen_processes
    return out


def merge(results: list[GenResult]) -> dict[str, Any]:
    """Per-operation and combined statistics over the measured window of all processes."""
    window_from = min(r.measure_from for r in results)
    ends = [s + lat for r in results for s, lat in zip(r.starts, r.latencies, strict=True)]
    window_to = max(ends) if ends else max(r.stop_at for r in results)
    window = max(1e-9, window_to - window_from)
    rows: dict[str, list[tuple[float, int]]] = {}
    for r in results:
        for op, lat, status in zip(r.ops, r.latencies, r.statuses, strict=True):
            rows.setdefault(OP_NAMES[op], []).append((lat, status))
    groups = {name: rows[name] for name in OP_NAMES.values() if name in rows}
    groups["combined"] = [x for v in rows.values() for x in v]
    stats = {}
    for name, items in groups.items():
        bad = sum(1 for _, s in items if not 200 <= s < 300)
        stats[name] = {"requests": len(items), "rps": len(items) / window,
                       **latency_summary([lat for lat, _ in items]),
                       "errors": bad, "error_rate": bad / len(items) if items else 0.0,
                       "statuses": dict(Counter(str(s) for _, s in items))}
    exceptions: Counter[str] = Counter()
    for r in results:
        exceptions.update(r.errors)
    samples = [s for r in results for s in r.samples][:ERROR_SAMPLES]
    return {"window_s": window, "ops": stats, "exceptions": dict(exceptions),
            "error_samples": samples}


# -- one backend, end to end ------------------------------------------------------------------

async def _api(session: Any, method: str, path: str, key: str, body: Any = None,
               expect: int = 200) -> Any:
    async with session.request(method, path, json=body,
                               headers={"Authorization": f"Bearer {key}"}) as r:
        text = await r.text()
        if r.status != expect:
            raise RuntimeError(f"{method} {path} -> {r.status} (expected {expect}): "
                               f"{text[:500]}")
        return json.loads(text)


async def _timed_gets(session: Any, path: str, key: str, n: int, concurrency: int,
                      check: Any) -> list[float]:
    latencies: list[float] = []
    todo = iter(range(n))
    headers = {"Authorization": f"Bearer {key}"}

    async def conn() -> None:
        for _ in todo:
            started = time.perf_counter()
            async with session.get(path, headers=headers) as r:
                payload = await r.read()
                status = r.status
            latencies.append(time.perf_counter() - started)
            if status != 200:
                raise RuntimeError(f"GET {path} -> {status}: {payload[:300]!r}")
            check(json.loads(payload))

    await asyncio.gather(*(conn() for _ in range(concurrency)))
    return latencies


def _queued_for(size: int) -> int:
    """Queued rows wanted at a size: 10 % at 1,000, a few hundred beyond."""
    return min(size // 10, 300)


async def list_phase(db: Database, base: str, key: str, tenant: str, wf: dict[str, Any],
                     sizes: list[int], requests: int, concurrency: int) -> list[dict[str, Any]]:
    import aiohttp

    out = []
    # The tenant's history is a grid of 1 ms time slots (as many as the largest size); each
    # size adds rows in free slots spread evenly over the whole grid, so at every size the
    # queued rows are spread evenly through the tenant's history (the worst case for a
    # status filter: a page needs ~50/queued-share rows walked in created_at order).
    final = sizes[-1]
    base_ts = time.time() - final * 1e-3 - 1.0
    used: set[int] = set()
    queued_have = 0
    queries = {"status=queued": "/api/v1/executions?status=queued&limit=50",
               "all (first page)": "/api/v1/executions?limit=50"}
    async with aiohttp.ClientSession(base) as session:
        for size in sizes:
            new = spread([k for k in range(final) if k not in used], size - len(used))
            insert_s = 0.0
            if new:
                queued = set(spread(new, _queued_for(size) - queued_have))
                rows = execution_rows(new, queued, tenant_id=tenant, workflow_id=wf["id"],
                                      name=wf["name"], definition=wf["definition"],
                                      base_ts=base_ts)
                started = time.perf_counter()
                await db.insert_executions(rows)
                if isinstance(db, PgDatabase):
                    await db.analyze()
                insert_s = time.perf_counter() - started
                used.update(new)
                queued_have += len(queued)
            tenant_rows, table_rows = await db.count(tenant), await db.count()
            if tenant_rows != size:
                raise RuntimeError(f"list tenant has {tenant_rows} rows, expected {size}")
            for label, path in queries.items():
                want_status = "queued" if "queued" in label else None

                def check(page: dict[str, Any], want: str | None = want_status) -> None:
                    items = page["items"]
                    if len(items) != 50 or (want and any(i["status"] != want for i in items)):
                        raise RuntimeError(f"unexpected page: {len(items)} items")

                await _timed_gets(session, path, key, 20, concurrency, check)  # warm-up
                lat = await _timed_gets(session, path, key, requests, concurrency, check)
                out.append({"rows": size, "queued": queued_have, "table_rows": table_rows,
                            "query": label, "insert_s": round(insert_s, 2),
                            "requests": len(lat), **latency_summary(lat)})
                insert_s = 0.0
    return out


def list_verdict(rows: list[dict[str, Any]]) -> dict[str, bool]:
    verdict = {}
    for query in dict.fromkeys(r["query"] for r in rows):
        mine = sorted((r for r in rows if r["query"] == query), key=lambda r: r["rows"])
        verdict[query] = all(
            mine[-1][k] <= max(2 * mine[0][k], mine[0][k] + 10.0) for k in ("p50_ms", "p99_ms"))
    return verdict


async def run_backend(db: Database, args: argparse.Namespace) -> dict[str, Any]:
    import aiohttp

    server: Server | None = None
    try:
        await db.open()
        server = Server(db.url, processes=args.processes, port=free_port())
        tenant, key = await asyncio.to_thread(create_tenant, db.url, "apibench", server.cwd)
        await asyncio.to_thread(server.start)
        definition = workflow_definition()
        async with aiohttp.ClientSession(server.base) as session:
            wf = await _api(session, "POST", "/api/v1/workflows", key, definition, 201)
            probe = await _api(session, "POST", "/api/v1/executions", key,
                               {"workflow_id": wf["id"],
                                "inputs": {"applicant_id": "probe", "step": 0}}, 202)
            await _api(session, "GET", f"/api/v1/executions/{probe['execution_id']}", key)
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
        mixed = await asyncio.to_thread(run_load, mode="mix", duration_s=args.duration,
                                        **common)
        after_load = await db.count(tenant)
        lists: list[dict[str, Any]] = []
        if args.list_sizes:
            log(f"[{db.name}] list latency at {', '.join(f'{s:,}' for s in args.list_sizes)} "
                "rows")
            tenant2, key2 = await asyncio.to_thread(create_tenant, db.url, "apibench-list",
                                                    server.cwd)
            async with aiohttp.ClientSession(server.base) as session:
                wf2 = await _api(session, "POST", "/api/v1/workflows", key2, definition, 201)
                wf2 = await _api(session, "GET", f"/api/v1/workflows/{wf2['id']}", key2)
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
            "api_cpu_ms_per_request": (
                round(1e3 * r["mixed"]["cpu"]["api_s"] / c["requests"], 3)
                if r["mixed"].get("cpu", {}).get("api_s") is not None else None)}
        if r["lists"]:
            entry["list_p99_ms"] = {f"{x['query']}@{x['rows']}": round(x["p99_ms"], 1)
                                    for x in r["lists"]}
            entry["list_flat"] = list_verdict(r["lists"])
        summary["backends"][r["backend"]] = entry
    return summary


# -- profiling: the server side in-process --------------------------------------------------

async def profile_backend(db: Database, n: int, concurrency: int, top: int,
                          out_dir: Path) -> None:
    """N requests of the 3:1 mix through the ASGI app (httpx ASGITransport) under cProfile;
    prints the top functions by own time and by cumulative time, per request."""
    import cProfile
    import pstats

    import httpx

    from omium.api.app import create_app
    from omium.api.auth import create_tenant_with_key
    from omium.api.settings import Settings

    await db.open()
    try:
        app = create_app(Settings(database_url=db.url))
        async with app.router.lifespan_context(app):
            store = app.state.store
            _, key = await create_tenant_with_key(store, "apiprof")
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://omium",
                                         headers={"Authorization": f"Bearer {key}"}) as client:
                r = await client.post("/api/v1/workflows", json=workflow_definition())
                r.raise_for_status()
                wf_id = r.json()["id"]
                ids: list[str] = []
                counter = itertools.count()
                rnd = random.Random(0)

                async def conn(total: int) -> None:
                    while (i := next(counter)) < total:
                        if i % 4 == 3 and ids:
                            resp = await client.get("/api/v1/executions/"
                                                    + ids[rnd.randrange(len(ids))])
                        else:
                            resp = await client.post("/api/v1/executions", json={
                                "workflow_id": wf_id,
                                "inputs": {"applicant_id": f"P-{i}", "step": 0}})
                            if resp.status_code == 202:
                                ids.append(resp.json()["execution_id"])
                        if resp.status_code >= 300:
                            raise RuntimeError(f"{resp.status_code}: {resp.text[:300]}")

                await asyncio.gather(*(conn(max(40, n // 10)) for _ in range(concurrency)))
                counter = itertools.count()
                main_prof, db_prof = cProfile.Profile(), cProfile.Profile()
                pool = getattr(getattr(store, "driver", None), "_pool", None)
                db_thread = pool is not None and hasattr(pool, "submit")  # SQLite's one thread
                if db_thread:
                    pool.submit(db_prof.enable).result()
                started, cpu0 = time.perf_counter(), time.process_time()
                main_prof.enable()
                await asyncio.gather(*(conn(n) for _ in range(concurrency)))
                main_prof.disable()
                wall, cpu = time.perf_counter() - started, time.process_time() - cpu0
                if db_thread:
                    pool.submit(db_prof.disable).result()
        profiles = [("event-loop thread (client + server)", main_prof, "main")]
        if db_thread:
            profiles.append(("SQLite driver thread", db_prof, "sqlite-thread"))
        print(f"\n== profile, {db.name}: {n} requests (3 POST : 1 GET) at concurrency "
              f"{concurrency}, in-process: {wall:.2f} s wall, {cpu:.2f} s CPU "
              f"({1e3 * cpu / n:.3f} ms CPU/request, profiler overhead included) ==")
        app_ms = max((ct for (f, _l, fn), (_c, _n, _t, ct, _x) in
                      pstats.Stats(main_prof).stats.items()  # type: ignore[attr-defined]
                      if f.endswith("fastapi/applications.py") and fn == "__call__"),
                     default=float("nan")) * 1e3 / n
        print(f"the ASGI app itself (fastapi/applications.py __call__, cumulative, event-loop "
              f"thread, time while suspended excluded): {app_ms:.3f} ms/request; the rest of "
              "the event-loop thread is the httpx client, the loop and idle polling")
        if db_thread:
            print("the SQLite thread's times are wall time inside each call: a C call that "
                  "releases the GIL (sqlite3 execute) also counts the wait to take it back")
        print("calls/req: a coroutine counts one call per resumption")
        for title, prof, stem in profiles:
            path = out_dir / f"api_profile_{db.name}_{stem}.prof"
            prof.dump_stats(str(path))
            for sort in ("tottime", "cumulative"):
                print(f"\n-- {title}, by {sort} (ms per request = time / {n}); {path} --")
                _print_stats(pstats.Stats(prof), sort, top, n)
    finally:
        await db.close()


def _print_stats(stats: Any, sort: str, top: int, n: int) -> None:
    rows = []
    for (filename, line, func), (_cc, nc, tt, ct, _callers) in stats.stats.items():
        rows.append((tt if sort == "tottime" else ct, nc, tt, ct, filename, line, func))
    rows.sort(reverse=True)
    print(f"{'own ms/req':>10} {'cum ms/req':>10} {'calls/req':>9}  function")
    for _key, nc, tt, ct, filename, line, func in rows[:top]:
        short = _short_path(filename)
        print(f"{1e3 * tt / n:>10.3f} {1e3 * ct / n:>10.3f} {nc / n:>9.1f}  "
              f"{short}:{line}({func})")


def _short_path(filename: str) -> str:
    for marker in ("/site-packages/", "/src/", "/lib/python3"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


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
    p.add_argument("--postgres", metavar="URL", default=os.environ.get(PG_ENV),
                   help=f"PostgreSQL server URL (default ${PG_ENV}); a fresh database is "
                        "created on it and dropped after")
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
