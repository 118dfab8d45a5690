"""I/O-bound executions on one default ``omium serve``: how many wait at once, how fast.

Real agents spend seconds waiting on an LLM call. This benchmark runs executions of a
one-agent workflow whose agent waits one second, on one default ``omium serve`` (one API
process with its in-process workers, SQLite), in two variants:

    async   ``bench.agents:sleep1``       ``await asyncio.sleep(1)``
    sync    ``bench.agents:sync_sleep1``  ``time.sleep(1)`` (run in the sync-agent threads)

First a baseline, the old default: ``omium serve --worker-concurrency 4`` running
``--baseline-n`` (default 40) executions of the first variant the same way (step 1 below);
each variant's completed/s is printed as a ratio of it. Then, for each variant (a fresh
database and server for each phase; all on loopback):
    1. Throughput: a tenant is created (``omium tenants create``), ``omium serve --db URL`` is
       started with its defaults, the workflow is registered and one probe execution is run
       to completion (imports, caches, a first thread). Then N (default 2,000) executions are
       POSTed from C (default 64) keep-alive aiohttp connections while the database is polled
       (every 50 ms, read-only) until all N are ``completed``. Printed: wall time from the
       first POST to the last completion, submit p50/p99, completed/s, the most executions
       seen running at once, and the server's peak RSS (VmHWM). Target: wall < 5 s.
    2. Memory: a fresh server, the probe, its RSS; then M (default 1,000) executions whose
       agent waits H seconds (default 8) are submitted, and once all M are running at once
       the RSS is read again: (RSS with M in flight - RSS with none) / M = memory per in-flight
       execution (for sync: a thread each as well). The run then ends (bounded by H).

The machine this was written on has 2 cores shared by the server, the client and whatever
else runs: figures are noisy floors. Any failed execution, or a phase past ``--timeout``,
fails the run (exit status 1).

    python -m bench.io_bound                          # both variants, N=2000, M=1000
    python -m bench.io_bound --variants async --n 500 --memory 0
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sqlite3
import sys
import time
from typing import Any

from bench._api_util import Server, SqliteDatabase, create_tenant, latency_summary
from bench._machine import free_port

AGENTS = {"async": ("bench.agents:sleep1", "bench.agents:sleep_s"),
          "sync": ("bench.agents:sync_sleep1", "bench.agents:sync_sleep_s")}
TARGET_WALL_S = 5.0


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _status_kb(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} for pid {pid}")


def _counts(path: str, tenant: str) -> dict[str, int]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30.0)
    try:
        rows = conn.execute("SELECT status, COUNT(*) FROM executions WHERE tenant_id = ? "
                            "GROUP BY status", (tenant,)).fetchall()
    finally:
        conn.close()
    return {str(s): int(n) for s, n in rows}


class Phase:
    """A fresh SQLite database, a tenant, a default ``omium serve`` on it, a workflow."""

    def __init__(self, callable_ref: str, extra_args: tuple[str, ...] = ()) -> None:
        self.callable_ref = callable_ref
        self.db = SqliteDatabase()
        self.server = Server(self.db.url, processes=1, port=free_port(), workers=True,
                             extra_args=extra_args)
        self.tenant = self.key = self.workflow_id = ""
        self.session: Any = None
        self.done = 0  # completed executions so far (the probe included)

    async def __aenter__(self) -> Phase:
        import aiohttp

        self.tenant, self.key = await asyncio.to_thread(create_tenant, self.db.url, "iobench",
                                                        self.server.cwd)
        await asyncio.to_thread(self.server.start)
        self.session = aiohttp.ClientSession(
            self.server.base, connector=aiohttp.TCPConnector(limit=256),
            headers={"Authorization": f"Bearer {self.key}"},
            timeout=aiohttp.ClientTimeout(total=120))
        definition = {"name": "io_bound", "execution_order": "sequential", "agents": [
            {"id": "wait", "framework": "python",
             "definition": {"callable": self.callable_ref}}]}
        async with self.session.post("/api/v1/workflows", json=definition) as r:
            if r.status != 201:
                raise RuntimeError(f"POST /api/v1/workflows -> {r.status}: {await r.text()}")
            self.workflow_id = (await r.json())["id"]
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.session is not None:
            await self.session.close()
        await asyncio.to_thread(self.server.stop, 60.0)
        await self.db.close()

    @property
    def pid(self) -> int:
        assert self.server.proc is not None
        return self.server.proc.pid

    async def submit(self, inputs: dict[str, Any]) -> float:
        started = time.monotonic()
        body = {"workflow_id": self.workflow_id, "inputs": inputs}
        async with self.session.post("/api/v1/executions", json=body) as r:
            text = await r.text()
            if r.status != 202:
                raise RuntimeError(f"POST /api/v1/executions -> {r.status}: {text[:300]}")
        return time.monotonic() - started

    async def counts(self) -> dict[str, int]:
        counts = await asyncio.to_thread(_counts, self.db.path, self.tenant)
        bad = {s: n for s, n in counts.items() if s in ("failed", "cancelled")}
        if bad:
            raise RuntimeError(f"executions did not complete: {bad}")
        return counts

    async def wait(self, until: Any, timeout_s: float, every_s: float = 0.05
                   ) -> dict[str, Any]:
        """Poll the database until ``until(counts)``; the most running seen, peak RSS."""
        deadline = time.monotonic() + timeout_s
        most_running = 0
        while True:
            counts = await self.counts()
            most_running = max(most_running, counts.get("running", 0))
            if until(counts):
                return {"counts": counts, "most_running": most_running}
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out after {timeout_s:g}s: {counts}")
            await asyncio.sleep(every_s)

    async def probe(self, timeout_s: float, **inputs: Any) -> None:
        await self.submit({"n": -1, **inputs})
        self.done += 1
        await self.wait(lambda c: c.get("completed", 0) >= self.done, timeout_s)


async def _submit_all(phase: Phase, n: int, connections: int, inputs: dict[str, Any]
                      ) -> list[float]:
    latencies: list[float] = []
    counter = iter(range(n))

    async def connection() -> None:
        for i in counter:
            latencies.append(await phase.submit({"n": i, **inputs}))

    await asyncio.gather(*(connection() for _ in range(connections)))
    return latencies


async def throughput(variant: str, args: argparse.Namespace, n: int | None = None,
                     extra_args: tuple[str, ...] = ()) -> dict[str, Any]:
    n = args.n if n is None else n
    async with Phase(AGENTS[variant][0], extra_args) as phase:
        await phase.probe(args.timeout)
        rss0 = _status_kb(phase.pid, "VmRSS")
        log(f"[{variant}] {n} executions from {args.connections} connections"
            f"{' (' + ' '.join(extra_args) + ')' if extra_args else ''}")
        t0 = time.monotonic()
        target = phase.done + n
        poll = asyncio.ensure_future(phase.wait(
            lambda c: c.get("completed", 0) >= target, args.timeout))
        try:
            latencies = await _submit_all(phase, n, args.connections, {})
            submitted_s = time.monotonic() - t0
            seen = await poll
        finally:
            poll.cancel()
            with contextlib.suppress(BaseException):
                await poll
        wall = time.monotonic() - t0
        lat = latency_summary(latencies)
        return {"variant": variant + (" " + " ".join(extra_args) if extra_args else ""),
                "n": n, "wall_s": wall, "submitted_s": submitted_s,
                "submit_p50_ms": lat["p50_ms"], "submit_p99_ms": lat["p99_ms"],
                "completed_per_s": n / wall, "most_running": seen["most_running"],
                "rss_idle_mb": rss0 / 1024, "peak_rss_mb": _status_kb(phase.pid, "VmHWM") / 1024,
                "pass": wall < TARGET_WALL_S}


async def memory(variant: str, args: argparse.Namespace) -> dict[str, Any]:
    async with Phase(AGENTS[variant][1]) as phase:
        await phase.probe(args.timeout, s=0)
        await asyncio.sleep(0.5)
        rss0 = _status_kb(phase.pid, "VmRSS")
        m = args.memory
        log(f"[{variant}] memory: {m} executions held in flight for {args.hold:g}s")
        await _submit_all(phase, m, args.connections, {"s": args.hold})
        seen = await phase.wait(lambda c: c.get("running", 0) >= m, args.hold, every_s=0.02)
        rss1 = _status_kb(phase.pid, "VmRSS")
        threads = _status_kb(phase.pid, "Threads")
        await phase.wait(lambda c: c.get("completed", 0) >= phase.done + m,
                         args.hold + args.timeout)
        return {"variant": variant, "in_flight": seen["counts"].get("running", 0),
                "rss_idle_mb": rss0 / 1024, "rss_in_flight_mb": rss1 / 1024,
                "kb_per_execution": (rss1 - rss0) / m, "threads": threads}


async def main(args: argparse.Namespace) -> int:
    results: list[dict[str, Any]] = []
    mems: list[dict[str, Any]] = []
    baseline = None
    if args.baseline_n > 0:  # the old default, 4 slots: a peer measured in the same run
        baseline = await throughput(args.variants[0], args, args.baseline_n,
                                    ("--worker-concurrency", "4"))
    for variant in args.variants:
        results.append(await throughput(variant, args))
        if args.memory > 0:
            mems.append(await memory(variant, args))
    print("\n| agent | executions | wall s | submitted in s | submit p50 ms | submit p99 ms "
          "| completed/s | most running at once | server peak RSS MB | target < 5 s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in ([baseline] if baseline else []) + results:
        print(f"| {r['variant']} | {r['n']:,} | {r['wall_s']:.2f} | {r['submitted_s']:.2f} "
              f"| {r['submit_p50_ms']:.1f} | {r['submit_p99_ms']:.1f} "
              f"| {r['completed_per_s']:,.0f} | {r['most_running']:,} "
              f"| {r['peak_rss_mb']:.0f} "
              f"| {'-' if r is baseline else 'PASS' if r['pass'] else 'FAIL'} |")
    for r in results:
        # The floor: submitting them all, then one agent's second.
        print(f"{r['variant']}: wall {r['wall_s']:.2f} s = submissions {r['submitted_s']:.2f}"
              f" s + {r['wall_s'] - r['submitted_s']:.2f} s to drain (the agent waits 1 s)"
              + (f"; {r['completed_per_s'] / baseline['completed_per_s']:.0f}x the completed/s"
                 f" of --worker-concurrency 4" if baseline else ""))
    if mems:
        print("\n| agent | in flight | RSS idle MB | RSS in flight MB | KB per execution "
              "| threads |")
        print("|---|---|---|---|---|---|")
        for m in mems:
            print(f"| {m['variant']} | {m['in_flight']:,} | {m['rss_idle_mb']:.1f} "
                  f"| {m['rss_in_flight_mb']:.1f} | {m['kb_per_execution']:.0f} "
                  f"| {m['threads']} |")
    if args.json:
        print(json.dumps({"baseline": baseline, "throughput": results, "memory": mems}))
    return 0


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=2000, help="executions per variant (2000)")
    p.add_argument("--connections", type=int, default=64, help="client connections (64)")
    p.add_argument("--variants", type=lambda s: s.split(","), default=["async", "sync"],
                   help="comma-separated: async,sync (both)")
    p.add_argument("--memory", type=int, default=1000,
                   help="executions held in flight for the memory figure (1000; 0: skip)")
    p.add_argument("--hold", type=float, default=8.0,
                   help="seconds each memory-phase agent waits (8)")
    p.add_argument("--baseline-n", type=int, default=40,
                   help="executions for the baseline, --worker-concurrency 4 (40; 0: skip)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per phase (120)")
    p.add_argument("--json", action="store_true", help="also print the figures as JSON")
    args = p.parse_args(argv)
    if (args.n < 1 or args.connections < 1 or args.memory < 0 or args.hold <= 0
            or args.baseline_n < 0):
        p.error("--n and --connections must be >= 1, --memory and --baseline-n >= 0, "
                "--hold > 0")
    unknown = set(args.variants) - set(AGENTS)
    if unknown:
        p.error(f"unknown variants {sorted(unknown)}: choose from {sorted(AGENTS)}")
    return args


if __name__ == "__main__":
    try:
        sys.exit(asyncio.run(main(parse())))
    except RuntimeError as failure:
        log(f"FAILED: {failure}")
        sys.exit(1)
