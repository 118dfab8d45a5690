"""The load generator of ``bench/api_load.py``: G spawned processes, each an aiohttp client
holding C/G keep-alive connections in a closed loop (a request, its answer, the next request),
recording every request's start, latency and status; a phase runs them together, samples CPU
around the measured window and merges their results."""

from __future__ import annotations

import asyncio
import itertools
import json
import multiprocessing as mp
import random
import threading
import time
from array import array
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from bench._api_util import Database, Server, latency_summary
from bench._machine import busy_fraction, machine_cpu, tree_cpu_s

POST, GET, HEALTH = 0, 1, 2
OP_NAMES = {POST: "POST /executions", GET: "GET /executions/{id}", HEALTH: "GET /health"}
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
