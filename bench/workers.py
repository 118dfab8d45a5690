"""Worker throughput: executions completed per second by 1, 2 and 4 worker *processes*.

What is measured
    A 3-agent *sequential* workflow of no-op Python agents (``bench.agents:noop``), stored
    once with ``put_workflow`` (as the API does, so workers prepare it once and cache the plan).
    For each worker count K (default 1, 2, 4), on PostgreSQL (required):

    1. the run tables are emptied (one fresh database, created on the server given by
       ``--postgres`` or ``$OMIUM_TEST_POSTGRES_URL`` for the whole run, dropped afterwards);
    2. N queued executions (default 1000) are inserted in one batch (``COPY``), then ANALYZE;
    3. K ``python -m omium.cli worker --concurrency C --lease L --poll P --grace G`` processes
       are started (C executions at once each, default 4);
    4. the benchmark polls ``SELECT ... count(*) ... status = 'completed'`` every 50 ms until
       all N are completed (or ``--timeout``), then stops the workers with SIGTERM.

    Times come from the database (the workers' own clocks, same machine): *elapsed* runs from
    spawning the processes to the last ``finished_at``, so it includes interpreter start-up,
    imports, connecting and the first claim (shown as *startup*). Rates:
      * exec/s       N / elapsed (the figure the brief asks for);
      * after start  N / (elapsed - startup);
      * steady       the middle 80 % of completions / the time they took (no start, no tail).
    Per worker = exec/s / K; scaling = exec/s (and steady) relative to K = 1 on the same
    backend. CPU: the worker processes' user+system seconds, the PostgreSQL server's (read
    from /proc when it runs on this machine), and how busy all cores were (machine-wide).

    (A worker claims again as soon as one of its runs ends; ``--poll`` only paces idle
    workers. This benchmark first found a worker capped at concurrency / poll = 20 exec/s
    because it refilled only once per poll; that is fixed.)

    At the end of every run the database is audited: every execution completed, with a result,
    exactly ``3`` checkpoint rows (none superseded: no agent ran twice), one claim event each
    and ``lease_epoch == 1`` unless it was reclaimed after a lost lease (then one more claim
    per reclaim). Any mismatch is printed and the exit status is 1.

    With ``--sqlite`` the same is done with 1 and 2 workers on a temporary SQLite file (the
    claim is a BEGIN IMMEDIATE transaction there: one writer at a time).

    With ``--profile N`` one ``Worker`` (same settings) then runs N executions in this process
    on PostgreSQL under cProfile, and the top functions are printed.

    Read the numbers with the core count in mind: the workers, PostgreSQL and the
    benchmark's poller share the machine's cores, so on 2 cores no scaling beyond 2 workers
    is expected (the table's header says how many cores there are).

How to run (from the repository root; ~1.5 min with the defaults, +75 s with --sqlite)
    URL=$(bash scripts/pg.sh start /tmp/pg-wbench)
    python -m bench.workers --postgres "$URL"
    python -m bench.workers --postgres "$URL" --sqlite --profile 300
    python -m bench.workers --postgres "$URL" --concurrency 16 --poll 0.05   # past the cap
    bash scripts/pg.sh stop /tmp/pg-wbench

The last line printed is a one-line JSON summary (for quoting in a README).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import json
import platform
import pstats
import sys
import time
from typing import Any

from bench._common import PG_ENV, add_postgres_option
from bench._machine import busy_fraction, cores, machine_cpu
from bench._workers_util import (
    Audit,
    Backend,
    PgBackend,
    SqliteBackend,
    WorkerProcs,
    WorkerResult,
    execution_rows,
)
from bench.agents import NOOP_INPUTS, noop_workflow
from omium.engine.graph import prepare
from omium.store import open_store

N_AGENTS = 3
INPUTS = NOOP_INPUTS
POLL_S = 0.05


def workflow(n_agents: int = N_AGENTS) -> dict[str, Any]:
    """The benchmark workflow: a chain of no-op Python agents."""
    return noop_workflow("bench_workers_noop", n_agents)


def stored_definition() -> dict[str, Any]:
    """The definition as the engine stores it (validated, normalised)."""
    return prepare(workflow()).workflow.model_dump(mode="json", exclude_none=True)


async def register_workflow(backend: Backend) -> str:
    """Migrate the database (through the store, as a worker would) and store the workflow."""
    async with open_store(backend.url) as store:
        return await store.put_workflow(workflow()["name"], stored_definition())


# -- one measured run -----------------------------------------------------------------------

def _steady_rate(finished: list[float]) -> float | None:
    """Completions per second over the middle 80 % of them."""
    if len(finished) < 10:
        return None
    lo, hi = int(len(finished) * 0.1), int(len(finished) * 0.9) - 1
    span = finished[hi] - finished[lo]
    return (hi - lo) / span if span > 0 else None


async def run_one(backend: Backend, workflow_id: str, k: int,
                  args: argparse.Namespace) -> dict[str, Any]:
    n = args.executions
    await backend.reset()
    await backend.insert(execution_rows(n, workflow_id, workflow()["name"],
                                        stored_definition(), INPUTS))
    procs = WorkerProcs(backend.url, k, concurrency=args.concurrency, lease_s=args.lease,
                        poll_s=args.poll, grace_s=args.grace)
    cpu_before, pg_before = machine_cpu(), backend.server_cpu_s()
    wall0, t0 = time.time(), time.perf_counter()
    procs.start()
    done, timed_out, died = 0, False, []
    try:
        next_poll = t0
        while True:
            done, _ = await backend.progress()
            if done >= n:
                break
            died = procs.dead()
            if died:
                break
            if time.perf_counter() - t0 > args.timeout:
                timed_out = True
                break
            next_poll += POLL_S
            await asyncio.sleep(max(0.0, next_poll - time.perf_counter()))
        polled_s = time.perf_counter() - t0
        procs.sample_cpu()
        cpu_after, pg_after = machine_cpu(), backend.server_cpu_s()
    finally:
        workers = procs.stop()
    audit = await backend.audit(N_AGENTS)
    row = result_row(backend.name, k, n, wall0, polled_s, audit, workers,
                     busy_fraction(cpu_before, cpu_after), timed_out, died)
    row["server_cpu_s"] = (pg_after - pg_before
                           if pg_before is not None and pg_after is not None else None)
    return row


def result_row(backend: str, k: int, n: int, wall0: float, polled_s: float, audit: Audit,
               workers: list[WorkerResult], busy: float | None, timed_out: bool,
               died: list[int]) -> dict[str, Any]:
    completed = audit.completed
    elapsed = (audit.finished_ts[-1] - wall0) if audit.finished_ts else polled_s
    startup = (audit.first_claim_ts - wall0) if audit.first_claim_ts is not None else None
    rate = completed / elapsed if elapsed > 0 else 0.0
    after = (completed / (elapsed - startup)
             if startup is not None and elapsed > startup else None)
    problems = audit.problems(n, N_AGENTS)
    if timed_out:
        problems.insert(0, f"timed out after {polled_s:.1f}s with {completed}/{n} completed")
    for i in died:
        w = workers[i]
        problems.insert(0, f"worker {i} exited early (rc {w.returncode}): "
                           f"{w.stderr_tail.strip()[-500:]}")
    cpu = [w.cpu_s for w in workers]
    return {
        "backend": backend, "workers": k, "executions": n, "completed": completed,
        "elapsed_s": elapsed, "startup_s": startup, "exec_per_s": rate,
        "per_worker_per_s": rate / k, "after_start_per_s": after,
        "steady_per_s": _steady_rate(audit.finished_ts),
        "per_worker_completed": sorted((w.completed or 0 for w in workers), reverse=True),
        "worker_cpu_s": sum(c for c in cpu if c is not None) if any(cpu) else None,
        "machine_busy": busy, "reclaims": audit.reclaims, "problems": problems,
    }


# -- profiling one worker in this process ---------------------------------------------------

async def profile_worker(backend: Backend, workflow_id: str, args: argparse.Namespace,
                         n: int) -> tuple[str, float]:
    """cProfile one in-process Worker draining N queued executions; (top functions, rate)."""
    from omium.engine.worker import Worker

    await backend.reset()
    await backend.insert(execution_rows(n, workflow_id, workflow()["name"],
                                        stored_definition(), INPUTS))
    profiler = cProfile.Profile()
    async with open_store(backend.url) as store:
        worker = Worker(store, concurrency=args.concurrency, lease_s=args.lease,
                        poll_s=args.poll, grace_s=args.grace)
        stop = asyncio.Event()

        async def watch() -> None:  # Worker.completed is a plain counter: poll it
            while True:
                if worker.completed >= n:
                    stop.set()
                    return
                await asyncio.sleep(0.01)

        watcher = asyncio.ensure_future(watch())
        started = time.perf_counter()
        profiler.enable()
        try:
            await asyncio.wait_for(worker.run(stop), args.timeout)
        finally:
            profiler.disable()
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        elapsed = time.perf_counter() - started
    buf = io.StringIO()
    stats = pstats.Stats(profiler, stream=buf)
    stats.sort_stats("tottime").print_stats(20)
    stats.sort_stats("cumulative").print_stats(35)
    return buf.getvalue(), worker.completed / elapsed


# -- main -----------------------------------------------------------------------------------

def _counts(text: str) -> list[int]:
    try:
        out = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}"
                                         ) from None
    if not out or min(out) < 1:
        raise argparse.ArgumentTypeError("worker counts must be >= 1")
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Executions completed per second by 1, 2 and 4 `omium worker` processes "
                    "(3-agent no-op workflow, PostgreSQL; optionally SQLite).")
    add_postgres_option(p, "; required. A fresh database is created on it for the run and "
                           "dropped afterwards")
    p.add_argument("--executions", type=int, default=1000,
                   help="queued executions per worker count (default 1000)")
    p.add_argument("--workers", type=_counts, default=[1, 2, 4], metavar="K,K,...",
                   help="worker process counts on PostgreSQL (default 1,2,4)")
    p.add_argument("--concurrency", type=int, default=4,
                   help="executions each worker runs at once (default 4, the CLI's)")
    p.add_argument("--poll", type=float, default=0.2,
                   help="worker idle poll interval, seconds (default 0.2, the CLI's)")
    p.add_argument("--lease", type=float, default=10.0, help="lease seconds (default 10)")
    p.add_argument("--grace", type=float, default=5.0,
                   help="seconds a worker may drain after SIGTERM (default 5)")
    p.add_argument("--timeout", type=float, default=90.0,
                   help="give up on one worker count after this many seconds (default 90)")
    p.add_argument("--sqlite", action="store_true",
                   help="also measure a temporary SQLite file (single-writer claims)")
    p.add_argument("--sqlite-workers", type=_counts, default=[1, 2], metavar="K,K,...",
                   help="worker process counts on SQLite (default 1,2)")
    p.add_argument("--profile", type=int, default=0, metavar="N",
                   help="afterwards, cProfile one in-process Worker running N executions on "
                        "PostgreSQL (main thread only; agent threads and waits show as select)")
    args = p.parse_args(argv)
    if args.executions < 1 or args.concurrency < 1 or args.poll <= 0 or args.profile < 0:
        p.error("--executions and --concurrency must be >= 1, --poll > 0, --profile >= 0")
    if not args.postgres:
        p.error(f"PostgreSQL is required: pass --postgres URL or set ${PG_ENV} (a throwaway "
                "server: URL=$(bash scripts/pg.sh start /tmp/pg-wbench))")
    return args


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _cpu_ms_per_exec(r: dict[str, Any]) -> float | None:
    if r["worker_cpu_s"] is None or r["server_cpu_s"] is None or not r["completed"]:
        return None
    return (r["worker_cpu_s"] + r["server_cpu_s"]) / r["completed"] * 1000


def print_table(rows: list[dict[str, Any]], n_cores: int) -> None:
    head = (f"{'backend':<9}{'K':>3}{'elapsed s':>10}{'startup s':>10}{'exec/s':>8}"
            f"{'/worker':>8}{'after start':>12}{'steady':>8}{'scaling':>8}{'steady x':>9}"
            f"{'wrk CPU s':>10}{'db CPU s':>9}{'CPU ms/ex':>10}{'busy':>6}  per-worker done")
    print(head)
    print("-" * len(head))
    for r in rows:
        busy = None if r["machine_busy"] is None else r["machine_busy"] * 100
        print(f"{r['backend']:<9}{r['workers']:>3}{r['elapsed_s']:>10.2f}"
              f"{_fmt(r['startup_s'], '.2f'):>10}{r['exec_per_s']:>8.1f}"
              f"{r['per_worker_per_s']:>8.1f}{_fmt(r['after_start_per_s'], '.1f'):>12}"
              f"{_fmt(r['steady_per_s'], '.1f'):>8}{_fmt(r.get('scaling'), '.2f'):>8}"
              f"{_fmt(r.get('steady_scaling'), '.2f'):>9}"
              f"{_fmt(r['worker_cpu_s'], '.2f'):>10}{_fmt(r['server_cpu_s'], '.2f'):>9}"
              f"{_fmt(_cpu_ms_per_exec(r), '.2f'):>10}{_fmt(busy, '.0f'):>5}%"
              f"  {'/'.join(str(c) for c in r['per_worker_completed'])}")
    print("K = worker processes; exec/s = completed / elapsed (spawn to last finish); after "
          "start = excluding start-up (spawn to first claim); steady = middle 80 % of "
          "completions; scaling = exec/s (steady x = steady) / the same backend's K=1; wrk CPU "
          "= all workers' user+system seconds (start-up included); db CPU = the PostgreSQL "
          "server's, when it runs on this machine (all its databases, this benchmark's 50 ms "
          "progress query included); CPU ms/ex = (wrk + db) per execution; "
          f"busy = share of all {n_cores} cores in use during the run, whatever "
          "used them (other processes on the machine included).")
    print(f"This machine has {n_cores} core(s): the workers compete with PostgreSQL (and the "
          "benchmark's 50 ms poller) for them, so CPU-bound workers (busy near 100 %) cannot "
          f"scale beyond {n_cores} processes here; poll-bound ones (busy well below) can.")


async def measure_backend(backend: Backend, counts: list[int], args: argparse.Namespace,
                          rows: list[dict[str, Any]]) -> str:
    """All worker counts on one backend; returns the workflow id (for profiling)."""
    workflow_id = await register_workflow(backend)
    for k in counts:
        print(f"  {backend.name}, {k} worker(s) x {args.executions} executions ...", end="",
              flush=True, file=sys.stderr)
        started = time.perf_counter()
        row = await run_one(backend, workflow_id, k, args)
        base = next((r for r in rows if r["backend"] == backend.name and r["workers"] == 1),
                    row if k == 1 else None)
        if base is not None:
            row["scaling"] = row["exec_per_s"] / base["exec_per_s"]
            if row["steady_per_s"] and base["steady_per_s"]:
                row["steady_scaling"] = row["steady_per_s"] / base["steady_per_s"]
        rows.append(row)
        print(f" {row['exec_per_s']:.1f} exec/s ({time.perf_counter() - started:.1f}s)",
              file=sys.stderr)
    return workflow_id


async def amain(args: argparse.Namespace) -> int:
    rows: list[dict[str, Any]] = []
    profile_text, profile_rate = None, None
    pg = PgBackend(args.postgres)
    try:
        await pg.open()
    except Exception as err:
        print(f"workers: cannot create a database on {args.postgres}: {err!r}", file=sys.stderr)
        return 2
    try:
        workflow_id = await measure_backend(pg, args.workers, args, rows)
        if args.profile:
            print(f"  profiling one in-process worker x {args.profile} executions ...",
                  file=sys.stderr)
            profile_text, profile_rate = await profile_worker(pg, workflow_id, args,
                                                              args.profile)
    finally:
        await pg.close()
    if args.sqlite:
        sq = SqliteBackend()
        try:
            await measure_backend(sq, args.sqlite_workers, args, rows)
        finally:
            await sq.close()

    n_cores = cores()
    print()
    print_table(rows, n_cores)
    failed = False
    for r in rows:
        for problem in r["problems"]:
            failed = True
            print(f"PROBLEM {r['backend']} K={r['workers']}: {problem}")
    if not failed:
        print(f"audit: every execution completed exactly once ({N_AGENTS} checkpoints each, "
              "one claim, lease_epoch 1) in every run; reclaims: "
              f"{sum(r['reclaims'] for r in rows)}")
    if profile_text:
        print(f"\ncProfile of one in-process Worker (concurrency {args.concurrency}, poll "
              f"{args.poll:g}s), {args.profile} executions: {profile_rate:.1f} exec/s "
              "under the profiler")
        print(profile_text)

    summary: dict[str, Any] = {
        "bench": "workers", "agents": N_AGENTS, "executions": args.executions,
        "concurrency": args.concurrency, "poll_s": args.poll, "lease_s": args.lease,
        "cores": n_cores, "python": platform.python_version(),
        "results": {f"{r['backend']}/{r['workers']}": {
            k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()
            if k not in ("backend", "workers", "executions", "problems") and v is not None}
            for r in rows},
        "ok": not failed,
    }
    if profile_rate is not None:
        summary["profiled_in_process_per_s"] = round(profile_rate, 2)
    print(json.dumps(summary, separators=(",", ":")))
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print(f"workers: {N_AGENTS}-agent no-op workflow x {args.executions} executions, worker "
          f"processes {args.workers} (concurrency {args.concurrency}, poll {args.poll:g}s), "
          f"Python {platform.python_version()}, {cores()} core(s)", file=sys.stderr)
    return asyncio.run(amain(args))


if __name__ == "__main__":
    sys.exit(main())
