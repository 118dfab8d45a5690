"""Per-agent engine overhead (checkpoint + handoff) of Omium, compared with LangGraph.

What is measured
    A 10-agent *sequential* workflow of no-op Python agents (``bench.agents:noop``, which
    returns a two-key dict), each agent with a small JSON Schema ``input_schema`` so that
    every handoff is validated. N executions, each one
    ``await MultiAgentExecutor(store=store).execute(f"bench-{i}", wf)`` on one connected
    store, timed end to end (wall clock, ``time.perf_counter``), after a warm-up.

    * omium/sqlite    - a fresh temp-file database with the store's defaults (WAL,
                        synchronous=NORMAL; one driver thread).
    * omium/postgres  - only with ``--postgres URL`` or ``$OMIUM_TEST_POSTGRES_URL``: a fresh
                        database is created on that server for the run and dropped after.
    * direct          - the baseline: the same 10 agent functions called one after the other
                        in the same timing loop, no engine.
    * langgraph/...   - the same 10 functions as nodes of a ``StateGraph`` chain:
        - ``none``        compiled without a checkpointer (framework cost only);
        - ``sqlite``      ``SqliteSaver`` (sync, ``invoke``);
        - ``aiosqlite``   ``AsyncSqliteSaver`` (``ainvoke``), when installed;
      each checkpointed variant with ``durability="sync"`` (a step's checkpoint is committed
      before the next step starts: Omium's guarantee) and with LangGraph's default
      ``"async"``. Every execution uses a new ``thread_id``. The LangGraph SQLite files get
      the same PRAGMAs as Omium's (WAL, synchronous=NORMAL) so the disk settings match.

    Per-step overhead = (median execution time - median of ``direct``) / 10, for Omium and
    LangGraph alike (``direct`` is the common reference; Omium has no checkpoint-free mode).
    For LangGraph rows the checkpointer's own share, (median - median of the same graph
    without a checkpointer) / 10, is printed as well. The ratio column is
    Omium/sqlite per-step overhead divided by that row's per-step overhead.

    Unless ``--no-breakdown``, Omium's parts are then timed one by one on the same store
    settings (``prepare()`` of the definition, one handoff, one agent call through
    ``asyncio.to_thread``, one ``save_checkpoint`` with its handoff row), to show where an
    execution's time goes.

How to run (from the repository root; ~30 s on 2 cores with the defaults)
    python -m bench.step_overhead
    python -m bench.step_overhead --executions 500 --postgres postgresql://u@127.0.0.1/db
    python -m bench.step_overhead --profile 100      # also cProfile 100 Omium executions

The last line printed is a one-line JSON summary (for quoting in a README).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import io
import itertools
import json
import os
import platform
import pstats
import sqlite3
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypedDict, TypeVar

from jsonschema import Draft202012Validator

from bench._common import (
    FreshPgDatabase,
    add_postgres_option,
    add_timed_counts,
    percentile,
)
from bench.agents import NOOP_INPUTS, STEP_SCHEMA, noop, noop_workflow
from omium.coordination.handoff import HandoffProtocol
from omium.engine.executor import MultiAgentExecutor
from omium.engine.graph import prepare
from omium.store import CheckpointRecord, ExecutionRecord, open_store

N_AGENTS = 10
INPUTS = NOOP_INPUTS
T = TypeVar("T")


def workflow(n_agents: int = N_AGENTS) -> dict[str, Any]:
    """The benchmark workflow: a chain of no-op agents with small input schemas."""
    return noop_workflow("bench_noop_chain", n_agents, STEP_SCHEMA)


# -- statistics -----------------------------------------------------------------------------

def summarise(times_s: list[float]) -> dict[str, float]:
    ms = [t * 1000 for t in times_s]
    return {"median_ms": percentile(ms, 50), "p99_ms": percentile(ms, 99),
            "mean_ms": sum(ms) / len(ms), "min_ms": min(ms)}


def check_output(out: Any) -> None:
    if not (isinstance(out, dict) and out.get("step") == N_AGENTS):
        raise RuntimeError(f"unexpected workflow output {out!r}")


# -- the measured loops ---------------------------------------------------------------------

def run_direct(executions: int, warmup: int) -> list[float]:
    times = []
    for i in range(warmup + executions):
        started = time.perf_counter()
        data: dict[str, Any] = dict(INPUTS)
        for _ in range(N_AGENTS):
            data = noop(data)
        elapsed = time.perf_counter() - started
        check_output(data)
        if i >= warmup:
            times.append(elapsed)
    return times


async def run_omium(url: str, executions: int, warmup: int,
                    profiler: cProfile.Profile | None = None) -> list[float]:
    wf = workflow()
    store = open_store(url)
    await store.connect()
    try:
        for i in range(warmup):
            await MultiAgentExecutor(store=store).execute(f"warmup-{i}", wf)
        gc.collect()
        times = []
        if profiler is not None:
            profiler.enable()
        for i in range(executions):
            started = time.perf_counter()
            result = await MultiAgentExecutor(store=store).execute(f"bench-{i}", wf)
            times.append(time.perf_counter() - started)
            if result.status != "completed" or result.reused:
                raise RuntimeError(f"bench-{i}: {result.status} {result.error}")
            check_output(result.output)
        if profiler is not None:
            profiler.disable()
        rows = await store.get_checkpoints(f"bench-{executions - 1}")
        if len(rows) != N_AGENTS:
            raise RuntimeError(f"expected {N_AGENTS} checkpoints, found {len(rows)}")
        return times
    finally:
        await store.close()


class ChainState(TypedDict):
    applicant_id: str
    step: int


def langgraph_chain(checkpointer: Any = None) -> Any:
    from langgraph.graph import END, START, StateGraph

    graph = StateGraph(ChainState)
    names = [f"agent_{i}" for i in range(N_AGENTS)]
    for name in names:
        graph.add_node(name, noop)
    graph.add_edge(START, names[0])
    for a, b in itertools.pairwise(names):
        graph.add_edge(a, b)
    graph.add_edge(names[-1], END)
    return graph.compile(checkpointer=checkpointer)


def _lg_config(prefix: str, i: int) -> dict[str, Any]:
    return {"configurable": {"thread_id": f"{prefix}-{i}"}}


def run_langgraph_sync(path: str | None, durability: str | None, executions: int,
                       warmup: int) -> tuple[list[float], float]:
    """Time ``invoke``; returns the times and the checkpoint rows written per execution."""
    from contextlib import ExitStack

    with ExitStack() as stack:
        saver = None
        if path is not None:
            from langgraph.checkpoint.sqlite import SqliteSaver

            saver = stack.enter_context(SqliteSaver.from_conn_string(path))
            saver.conn.execute("PRAGMA journal_mode=WAL")
            saver.conn.execute("PRAGMA synchronous=NORMAL")
        app = langgraph_chain(saver)
        kwargs: dict[str, Any] = {"durability": durability} if saver is not None else {}
        for i in range(warmup):
            app.invoke(dict(INPUTS), _lg_config("warmup", i), **kwargs)
        gc.collect()
        times = []
        for i in range(executions):
            started = time.perf_counter()
            out = app.invoke(dict(INPUTS), _lg_config("bench", i), **kwargs)
            times.append(time.perf_counter() - started)
            check_output(out)
        rows = 0.0
        if saver is not None:
            count = saver.conn.execute("SELECT count(*) FROM checkpoints WHERE thread_id "
                                       "LIKE 'bench-%'").fetchone()[0]
            rows = count / executions
        return times, rows


async def run_langgraph_async(path: str | None, durability: str | None, executions: int,
                              warmup: int) -> tuple[list[float], float]:
    """Time ``ainvoke``; returns the times and the checkpoint rows written per execution."""
    from contextlib import AsyncExitStack

    async with AsyncExitStack() as stack:
        saver = None
        if path is not None:
            from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

            saver = await stack.enter_async_context(AsyncSqliteSaver.from_conn_string(path))
            await saver.conn.execute("PRAGMA journal_mode=WAL")
            await saver.conn.execute("PRAGMA synchronous=NORMAL")
        app = langgraph_chain(saver)
        kwargs: dict[str, Any] = {"durability": durability} if saver is not None else {}
        for i in range(warmup):
            await app.ainvoke(dict(INPUTS), _lg_config("warmup", i), **kwargs)
        gc.collect()
        times = []
        for i in range(executions):
            started = time.perf_counter()
            out = await app.ainvoke(dict(INPUTS), _lg_config("bench", i), **kwargs)
            times.append(time.perf_counter() - started)
            check_output(out)
        rows = 0.0
        if saver is not None:
            async with saver.conn.execute("SELECT count(*) FROM checkpoints WHERE thread_id "
                                          "LIKE 'bench-%'") as cur:
                row = await cur.fetchone()
            rows = row[0] / executions if row else 0.0
        return times, rows


def have_async_sqlite_saver() -> bool:
    try:
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver  # noqa: F401
    except ImportError:
        return False
    return True


# -- where Omium's time goes: its parts, timed one by one ---------------------------------

async def run_breakdown(url: str, iterations: int, warmup: int) -> dict[str, float]:
    """Median ms of each part of an execution, timed alone (same store settings)."""
    wf = workflow()
    data = {"applicant_id": "APP-2025-0142", "step": 1}
    store = open_store(url)
    await store.connect()
    try:
        await store.create_execution(ExecutionRecord("parts", "bench", {}, {},
                                                     status="running"))
        proto = HandoffProtocol()
        counter = iter(range(10**9))

        async def prepare_plan() -> None:
            prepare(wf)

        async def check_schemas() -> None:
            for _ in range(N_AGENTS):
                Draft202012Validator.check_schema(STEP_SCHEMA)

        async def handoff() -> None:
            await proto.initiate_handoff("parts", "a", ["b"], data, STEP_SCHEMA, persist=False)

        async def agent_hop() -> None:
            await asyncio.to_thread(noop, data)

        result = await proto.initiate_handoff("parts", "a", ["b"], data, STEP_SCHEMA,
                                              persist=False)
        record = HandoffProtocol.record("parts", "a", ["b"], result)

        async def checkpoint() -> None:
            now = time.time()
            await store.save_checkpoint(CheckpointRecord(
                "parts", f"agent_{next(counter)}", 0, 1, data, now, now), [record])

        parts = {"prepare() per execution": prepare_plan,
                 f"  uncached check_schema x{N_AGENTS} (cached in prepare)": check_schemas,
                 "handoff (validate+ack) per step": handoff,
                 "agent call via to_thread per step": agent_hop,
                 "save_checkpoint(+handoff row) per step": checkpoint}
        out = {}
        for name, fn in parts.items():
            times = []
            for i in range(warmup + iterations):
                started = time.perf_counter()
                await fn()
                if i >= warmup:
                    times.append(time.perf_counter() - started)
            out[name] = percentile([t * 1000 for t in times], 50)
        return out
    finally:
        await store.close()


# -- PostgreSQL: a throwaway database on the given server ---------------------------------

async def on_fresh_pg_database(url: str, fn: Callable[[str], Awaitable[T]]) -> T:
    """Run ``fn(database_url)`` on a new database of the server at ``url``, then drop it."""
    async with FreshPgDatabase(url, "omium_bench_") as db:
        return await fn(db.url)


# -- main -----------------------------------------------------------------------------------

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Per-agent engine overhead (checkpoint + handoff) of a 10-agent "
                    "sequential no-op workflow: Omium on SQLite/PostgreSQL vs LangGraph.")
    add_timed_counts(parser, "--executions", "executions per backend", 200, 20)
    add_postgres_option(parser, "; a fresh database is created on it for the run and dropped "
                                "afterwards")
    parser.add_argument("--skip-langgraph", action="store_true",
                        help="measure Omium and the direct baseline only")
    parser.add_argument("--no-breakdown", action="store_true",
                        help="skip timing Omium's parts (prepare, handoff, agent hop, "
                             "checkpoint) one by one")
    parser.add_argument("--profile", type=int, metavar="N", default=0,
                        help="afterwards, cProfile N Omium/SQLite executions and print the "
                             "top functions (main thread only; driver-thread time shows as "
                             "waiting in select)")
    args = parser.parse_args(argv)
    if args.executions < 1 or args.warmup < 0 or args.profile < 0:
        parser.error("--executions must be >= 1; --warmup and --profile >= 0")
    return args


Row = dict[str, Any]


def measure(label: str, fn: Callable[[], list[float] | tuple[list[float], float]],
            rows: dict[str, Row]) -> None:
    print(f"  {label} ...", end="", flush=True, file=sys.stderr)
    started = time.perf_counter()
    out = fn()
    times, ckpt_rows = out if isinstance(out, tuple) else (out, None)
    rows[label] = {**summarise(times), "checkpoint_rows": ckpt_rows}
    print(f" {time.perf_counter() - started:.1f}s", file=sys.stderr)


def _arun(coro_fn: Callable[[], Awaitable[Any]]) -> Callable[[], Any]:
    return lambda: asyncio.run(coro_fn())  # type: ignore[arg-type]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    n, w = args.executions, args.warmup
    rows: dict[str, Row] = {}
    print(f"step_overhead: {N_AGENTS} agents x {n} executions (+{w} warm-up), "
          f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, "
          f"{os.cpu_count()} CPUs", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="omium-bench-") as tmp:
        measure("direct", lambda: run_direct(n, w), rows)
        measure("omium/sqlite", _arun(lambda: run_omium(
            f"sqlite:///{tmp}/omium.db", n, w)), rows)
        if args.postgres:
            measure("omium/postgres", _arun(lambda: on_fresh_pg_database(
                args.postgres, lambda url: run_omium(url, n, w))), rows)
        if not args.skip_langgraph:
            measure("langgraph/none invoke", lambda: run_langgraph_sync(None, None, n, w), rows)
            measure("langgraph/none ainvoke", _arun(lambda: run_langgraph_async(
                None, None, n, w)), rows)
            for durability in ("sync", "async"):
                measure(f"langgraph/sqlite invoke d={durability}",
                        lambda d=durability: run_langgraph_sync(
                            f"{tmp}/lg-sync-{d}.db", d, n, w), rows)
            if have_async_sqlite_saver():
                for durability in ("sync", "async"):
                    measure(f"langgraph/aiosqlite ainvoke d={durability}",
                            _arun(lambda d=durability: run_langgraph_async(
                                f"{tmp}/lg-async-{d}.db", d, n, w)), rows)
        breakdowns: dict[str, dict[str, float]] = {}
        if not args.no_breakdown:
            print("  omium parts ...", end="", flush=True, file=sys.stderr)
            started = time.perf_counter()
            breakdowns["omium/sqlite"] = asyncio.run(run_breakdown(
                f"sqlite:///{tmp}/parts.db", n, w))
            if args.postgres:
                breakdowns["omium/postgres"] = asyncio.run(on_fresh_pg_database(
                    args.postgres, lambda url: run_breakdown(url, n, w)))
            print(f" {time.perf_counter() - started:.1f}s", file=sys.stderr)
        profile_text = None
        if args.profile:
            profiler = cProfile.Profile()
            asyncio.run(run_omium(f"sqlite:///{tmp}/profile.db", args.profile, w, profiler))
            buf = io.StringIO()
            stats = pstats.Stats(profiler, stream=buf).strip_dirs()
            stats.sort_stats("tottime").print_stats(25)
            stats.sort_stats("cumulative").print_stats(40)
            profile_text = buf.getvalue()

    base = rows["direct"]["median_ms"]
    for label, row in rows.items():
        row["per_step_ms"] = (row["median_ms"] - base) / N_AGENTS
        if label.startswith("langgraph/") and "/none" not in label:
            ref = rows.get("langgraph/none ainvoke" if "ainvoke" in label
                           else "langgraph/none invoke")
            if ref is not None:
                row["checkpointer_per_step_ms"] = (row["median_ms"] - ref["median_ms"]) / N_AGENTS
    omium_step = rows["omium/sqlite"]["per_step_ms"]

    head = (f"{'backend':<34}{'median ms':>10}{'p99 ms':>9}{'ms/step':>9}{'ckpt ms/step':>14}"
            f"{'ckpt rows':>11}{'Omium/this':>12}")
    print(head)
    print("-" * len(head))
    for label, row in rows.items():
        ckpt = row.get("checkpointer_per_step_ms")
        ratio = (omium_step / row["per_step_ms"]
                 if ckpt is not None and row["per_step_ms"] > 0 else None)
        crow = row["checkpoint_rows"]
        print(f"{label:<34}{row['median_ms']:>10.3f}{row['p99_ms']:>9.3f}"
              f"{row['per_step_ms']:>9.3f}"
              f"{'' if ckpt is None else f'{ckpt:.3f}':>14}"
              f"{'' if crow is None else f'{crow:g}':>11}"
              f"{'' if ratio is None else f'{ratio:.2f}x':>12}")
    print(f"ms/step = (median - direct median) / {N_AGENTS}; ckpt ms/step = (median - same "
          f"graph without checkpointer) / {N_AGENTS}; Omium/this = omium/sqlite ms/step / "
          "that row's ms/step (checkpointed LangGraph rows); ckpt rows = LangGraph checkpoint "
          "rows per execution (Omium writes 10 checkpoints + 9 handoffs + 1 execution).")
    for backend, parts in breakdowns.items():
        print(f"\n{backend} parts, each timed alone (median ms over {n}):")
        for name, ms in parts.items():
            print(f"  {name:<42}{ms:>9.3f}")
        steps = sum(v for k, v in parts.items() if k.endswith("per step"))
        rest = rows[backend]["median_ms"] - N_AGENTS * steps
        parts["sum of per-step parts"] = steps
        parts["rest per execution"] = rest
        parts["rest per execution minus prepare()"] = rest - parts["prepare() per execution"]
        print(f"  {'sum of per-step parts':<42}{steps:>9.3f}")
        print(f"  {f'rest per execution (median - {N_AGENTS} x sum)':<42}{rest:>9.3f}")
        print(f"  {'  minus prepare()':<42}{rest - parts['prepare() per execution']:>9.3f}"
              "  (put_workflow, create_execution, final update, scheduling)")
    if profile_text:
        print(f"\ncProfile of {args.profile} omium/sqlite executions "
              f"({args.profile * N_AGENTS} steps):")
        print(profile_text)

    summary: dict[str, Any] = {
        "bench": "step_overhead", "agents": N_AGENTS, "executions": n, "warmup": w,
        "python": platform.python_version(), "sqlite": sqlite3.sqlite_version,
        "cpus": os.cpu_count(),
        "results": {label: {k: (round(v, 4) if isinstance(v, float) else v)
                            for k, v in row.items() if v is not None}
                    for label, row in rows.items()},
    }
    if breakdowns:
        summary["omium_parts_median_ms"] = {
            backend: {k.strip(): round(v, 4) for k, v in parts.items()}
            for backend, parts in breakdowns.items()}
    summary["ratio_omium_sqlite_per_step_overhead_vs"] = {
        label: round(omium_step / row["per_step_ms"], 3) for label, row in rows.items()
        if "checkpointer_per_step_ms" in row and row["per_step_ms"] > 0}
    print(json.dumps(summary, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
