"""Framework adapters: a LangGraph graph, a CrewAI crew and an AutoGen team run as Omium agents,
against the same graph, crew and team called directly, on the same model server.

What is measured
    The three teams of ``examples/research_team`` (each makes two model calls per run: the
    graph's ``read`` and ``judge`` nodes, the crew's two tasks, the panel's advocate and
    skeptic). The model is the project's fake OpenAI server in its own process
    (``python -m omium.testing.fake_server --delay 0.05 --reply VERDICT``): every call waits
    ``--latency-ms`` (50) and answers the same verdict, so both sides do the same work.

    * direct: the factory called with a stand-in context pointing straight at the fake server
      (each framework's own OpenAI client, no Omium): ``graph.compile().ainvoke(inputs)``,
      ``await crew.akickoff(inputs=inputs)`` (the call the adapter makes),
      ``await team.run(task=...)``.
    * omium: a one-agent workflow of the same definition as ``workflow.yaml``'s, run by
      ``MultiAgentExecutor.execute`` (what ``omium run`` calls) on a SQLite store: the run's
      lease, the handoff of the inputs, the adapter's checkpoints (LangGraph's saver after each
      super-step, AutoGen's state after each reply, CrewAI's tasks after each one), Omium's
      checkpoint, and every model call through the run's in-process gateway (token check,
      routing, a usage record per call) to the same fake server.

    One executor serves all runs (as a worker does; its gateway starts on the first call, in
    the warm-up). ``--runs`` timed runs per side and framework after ``--warmup``,
    interleaved run by run (the side that goes first alternates) so that load from other
    processes on the machine hits both sides alike. Reported per framework: mean and p50 ms
    per run both ways, and the overhead (omium - direct) in ms and % of direct. Every run is
    checked: the verdict is ``supported`` on both sides and Omium billed two calls.

    Both sides run on the event loop ``omium run`` uses (uvloop where installed;
    ``--asyncio-loop`` for asyncio's), and the heap left after the warm-up is frozen
    (``gc.freeze``; ``--no-gc-freeze`` to keep it collectable): otherwise a full collection of
    the frameworks' ~350,000 imported objects (120-150 ms) lands on a random run of either side.

How to run (from the repository root; ~1 min with the defaults)
    python -m bench.adapters
    python -m bench.adapters --runs 50 --frameworks crewai --profile

The last line printed is a one-line JSON summary.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import io
import json
import os
import platform
import pstats
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import yaml

from bench._common import ROOT
from bench._router_util import ServerProcess, ms_summary, table
from omium import MultiAgentExecutor
from omium._cli_common import _loop_factory
from omium.store import open_store

WORKFLOW = ROOT / "examples" / "research_team" / "workflow.yaml"
MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
VERDICT = '{"final": "supported", "reason": "Source 1 says readers and writers do not block."}'
CALLS_PER_RUN = 2
FRAMEWORKS = ("langgraph", "crewai", "autogen", "python")
# The reference rows: what Omium adds with no framework adapter in between.
PYTHON_AGENT = {"id": "python_agent", "framework": "python",
                "definition": {"callable": "bench.adapters:two_calls"}}
NOOP_AGENT = {"id": "noop", "framework": "python",
              "definition": {"callable": "bench.adapters:noop"}}


async def two_calls(inputs: dict[str, Any], ctx: Any) -> dict[str, Any]:
    """A python agent making the teams' two calls with the official client, no framework."""
    from openai import AsyncOpenAI

    from examples.research_team.verdicts import read_verdict

    async with AsyncOpenAI(base_url=ctx.llm_base_url, api_key=ctx.llm_api_key,
                           max_retries=0) as client:
        for _ in range(CALLS_PER_RUN):
            reply = await client.chat.completions.create(model=MODEL, messages=[
                {"role": "user", "content": f"Is this supported? {inputs['claim']}"}])
    return {"final": read_verdict(reply.choices[0].message.content or "")[0]}


async def noop(inputs: dict[str, Any]) -> dict[str, Any]:
    """No model call: an execution's own cost (lease, handoff, checkpoint, status)."""
    return {"final": "supported"}


class VerdictServer(ServerProcess):
    """The fake server answering every call with VERDICT after ``delay_s``."""

    def __init__(self, delay_s: float) -> None:
        super().__init__("fake", model=MODEL)
        self.delay_s = delay_s

    def spawn(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "omium.testing.fake_server", "--port", "0", "--model",
             MODEL, "--delay", str(self.delay_s), "--reply", VERDICT],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)


def direct_call(framework: str, spec: dict[str, Any], inputs: dict[str, Any],
                base_url: str) -> Callable[[], Awaitable[str]]:
    """One run of the framework's own object, its client pointed straight at the server;
    returns the verdict."""
    from omium.agents._imports import import_object

    factory = import_object(next(iter(spec["definition"].values())))
    ctx = SimpleNamespace(llm_base_url=base_url, llm_api_key="direct", llm_model=MODEL)

    async def langgraph() -> str:
        return str((await factory(ctx).compile().ainvoke(inputs))["final"])

    async def crewai() -> str:
        return str((await factory(ctx).akickoff(inputs=inputs)).pydantic.final)

    async def autogen() -> str:
        from omium.contrib.autogen.agent import task_text

        result = await factory(ctx).run(task=task_text(spec["definition"]["task"], inputs))
        return str(result.messages[-1].to_text())

    async def python() -> str:
        return str((await factory(inputs, ctx))["final"])

    return {"langgraph": langgraph, "crewai": crewai, "autogen": autogen,
            "python": python}[framework]


def omium_call(executor: MultiAgentExecutor, framework: str, spec: dict[str, Any],
               inputs: dict[str, Any], calls: int = CALLS_PER_RUN
               ) -> Callable[[], Awaitable[str]]:
    """One execution of a one-agent workflow holding ``spec``; returns the verdict."""
    workflow = {"name": f"bench_{framework}", "agents": [spec]}
    runs = iter(range(1_000_000))

    async def run() -> str:
        execution_id = f"bench-{framework}-{next(runs)}"
        result = await executor.execute(execution_id, workflow, inputs=inputs)
        if result.status != "completed":
            raise RuntimeError(f"{execution_id}: {result.status}: {result.error}")
        billed = (result.usage or {}).get("calls", 0)
        if billed != calls:
            raise RuntimeError(f"{execution_id}: billed {billed} calls, not {calls}")
        return str(result.results[spec["id"]]["final"])

    return run


async def timed(call: Callable[[], Awaitable[str]], into: list[int]) -> None:
    start = time.perf_counter_ns()
    verdict = await call()
    into.append(time.perf_counter_ns() - start)
    if verdict != "supported":
        raise RuntimeError(f"unexpected verdict {verdict!r}")


async def measure(args: argparse.Namespace, base_url: str, tmp: Path) -> dict[str, Any]:
    wf = yaml.safe_load(WORKFLOW.read_text())
    specs = {a["framework"]: a for a in wf["agents"]} | {"python": PYTHON_AGENT}
    (tmp / "omium-llm.yaml").write_text(yaml.safe_dump({"backends": [
        {"name": "local", "base_url": base_url, "model": MODEL, "kind": "local"}]}))
    os.environ["OMIUM_LLM_CONFIG"] = str(tmp / "omium-llm.yaml")
    results: dict[str, Any] = {}
    async with open_store(f"sqlite:///{tmp}/bench.db") as store, \
            MultiAgentExecutor(store) as executor:
        for fw in args.frameworks:
            sides = {"direct": direct_call(fw, specs[fw], wf["inputs"], base_url),
                     "omium": omium_call(executor, fw, specs[fw], wf["inputs"])}
            for _ in range(args.warmup):
                for call in sides.values():
                    await timed(call, [])
            if args.gc_freeze:
                # Everything alive after the warm-up (the frameworks' imported modules, the
                # executor, its gateway) moves out of the collector's reach, as a preloaded
                # server does: a full collection then scans what the runs allocate, not the
                # frameworks' ~350,000 objects, and stops landing 100+ ms pauses on whichever
                # side happens to trigger it. Both sides still pay for their own garbage.
                gc.collect()
                gc.freeze()
            times: dict[str, list[int]] = {"direct": [], "omium": []}
            for i in range(args.runs):
                order = ("direct", "omium") if i % 2 == 0 else ("omium", "direct")
                for side in order:
                    await timed(sides[side], times[side])
            results[fw] = {side: ms_summary(ns) for side, ns in times.items()}
            if args.profile:
                results[fw]["profile"] = await profile(sides["omium"], args.runs)
        floor: list[int] = []
        empty = omium_call(executor, "noop", NOOP_AGENT, wf["inputs"], calls=0)
        for i in range(args.warmup + args.runs):
            await timed(empty, floor if i >= args.warmup else [])
        results["floor"] = ms_summary(floor)
    return results


async def profile(call: Callable[[], Awaitable[str]], runs: int) -> str:
    """The top of a cProfile of ``runs`` more Omium runs (cumulative time)."""
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(runs):
        await timed(call, [])
    prof.disable()
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(40)
    return out.getvalue()


def overhead(row: dict[str, Any], stat: str) -> tuple[float, float]:
    direct, omium = row["direct"][stat], row["omium"][stat]
    return omium - direct, 100.0 * (omium - direct) / direct


def report(results: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    rows, summary = [], {}
    floor = results.pop("floor")
    for fw, row in results.items():
        mean_ms, mean_pct = overhead(row, "mean_ms")
        _, p50_pct = overhead(row, "p50_ms")
        rows.append([fw, row["direct"]["mean_ms"], row["direct"]["p50_ms"],
                     row["omium"]["mean_ms"], row["omium"]["p50_ms"], mean_ms,
                     f"{mean_pct:+.1f}%", f"{p50_pct:+.1f}%"])
        summary[fw] = {"direct_mean_ms": round(row["direct"]["mean_ms"], 2),
                       "direct_p50_ms": round(row["direct"]["p50_ms"], 2),
                       "omium_mean_ms": round(row["omium"]["mean_ms"], 2),
                       "omium_p50_ms": round(row["omium"]["p50_ms"], 2),
                       "overhead_mean_ms": round(mean_ms, 2),
                       "overhead_mean_pct": round(mean_pct, 2),
                       "overhead_p50_pct": round(p50_pct, 2)}
        if "profile" in row:
            print(f"--- cProfile of {args.runs} Omium runs, {fw} ---\n{row['profile']}")
    print(table(["framework", "direct mean", "direct p50", "omium mean", "omium p50",
                 "added ms", "overhead", "p50 overhead"], rows))
    print(f"an execution with no model call (a no-op python agent): mean "
          f"{floor['mean_ms']:.2f} ms, p50 {floor['p50_ms']:.2f} ms")
    summary["noop_execution_mean_ms"] = round(floor["mean_ms"], 2)
    summary["noop_execution_p50_ms"] = round(floor["p50_ms"], 2)
    return summary


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=30, help="timed runs per side (default 30)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed runs first (default 3)")
    parser.add_argument("--latency-ms", type=float, default=50.0,
                        help="the fake server's latency per call (default 50)")
    parser.add_argument("--frameworks", nargs="+", choices=FRAMEWORKS, default=list(FRAMEWORKS))
    parser.add_argument("--asyncio-loop", action="store_true",
                        help="asyncio's own event loop, not uvloop (which `omium run` uses "
                             "where it is installed)")
    parser.add_argument("--no-gc-freeze", dest="gc_freeze", action="store_false",
                        help="leave the warmed-up heap to the garbage collector (its full "
                             "collections then add 100+ ms pauses to random runs)")
    parser.add_argument("--profile", action="store_true",
                        help="also cProfile --runs more Omium runs per framework")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.warmup < 0 or args.latency_ms < 0:
        parser.error("--runs must be >= 1, --warmup and --latency-ms >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # CrewAI phones home unless told not to; a benchmark talks to loopback only.
    from omium.contrib.crewai.agent import quiet

    quiet()
    server = VerdictServer(args.latency_ms / 1000)
    server.spawn()
    try:
        base_url = server.wait_ready()
        with tempfile.TemporaryDirectory(prefix="omium-bench-adapters-") as tmp:
            # On the loop `omium run` drives executions on (uvloop where installed), both
            # sides alike; --asyncio-loop for the standard library's.
            factory = None if args.asyncio_loop else _loop_factory()
            with asyncio.Runner(loop_factory=factory) as runner:
                results = runner.run(measure(args, base_url, Path(tmp)))
    finally:
        server.stop()
    loop = "asyncio" if args.asyncio_loop or _loop_factory() is None else "uvloop"
    print(f"python {platform.python_version()}, {os.cpu_count()} cpus, {loop} loop, fake "
          f"server latency {args.latency_ms:g} ms per call, {CALLS_PER_RUN} calls per run, "
          f"{args.runs} runs per side interleaved, gc.freeze after warm-up: {args.gc_freeze}")
    summary = report(results, args)
    print(json.dumps({"bench": "adapters", "latency_ms": args.latency_ms, "runs": args.runs,
                      "loop": loop, "gc_freeze": args.gc_freeze,
                      **summary}, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
