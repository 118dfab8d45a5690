"""The measurements of ``bench/router.py``: latency at concurrency 1 (interleaved blocks),
throughput at concurrency 64, failover after a SIGKILL, the router's own cost with the HTTP
call stubbed, and a cProfile of router calls."""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import io
import pstats
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bench._machine import process_cpu_s
from bench._router_clients import (
    CONCURRENCY,
    EXPECTED,
    HOSTED_MODEL,
    LOCAL_MODEL,
    MESSAGES,
    Direct,
    Omium,
    Variant,
    check,
)
from bench._router_util import ServerProcess, ms_summary
from omium.llm import BackendConfig, LLMConfig, LLMRouter, Usage
from omium.llm.backend import Completion
from omium.llm.config import CircuitConfig


async def latency_c1(variants: list[Variant], calls: int, warmup: int,
                     block: int) -> dict[str, dict[str, Any]]:
    """Sequential calls, interleaved in blocks; per-call wall times (ns) and client CPU."""
    for v in variants:
        for _ in range(warmup):
            check(await v.call(), v.name)
    times: dict[str, list[int]] = {v.name: [] for v in variants}
    cpu = dict.fromkeys(times, 0.0)
    gc.collect()
    rounds = -(-calls // block)
    perf = time.perf_counter_ns
    for r in range(rounds):
        n = min(block, calls - r * block)
        shift = r % len(variants)
        for v in variants[shift:] + variants[:shift]:
            out = times[v.name]
            call = v.call
            c0 = time.process_time()
            for _ in range(n):
                t0 = perf()
                text = await call()
                out.append(perf() - t0)
                check(text, v.name)
            cpu[v.name] += time.process_time() - c0
    result = {}
    for name, ns in times.items():
        result[name] = {**ms_summary(ns), "cpu_us": cpu[name] / len(ns) * 1e6, "ns": ns}
    return result


async def run_workers(call: Callable[[], Awaitable[str]], who: str, concurrency: int,
                      calls: int, seconds: float) -> int:
    remaining = calls
    deadline = time.perf_counter() + seconds
    done = 0

    async def worker() -> None:
        nonlocal remaining, done
        while remaining > 0 and time.perf_counter() < deadline:
            remaining -= 1
            check(await call(), who)
            done += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done


async def throughput(v: Variant, server_pid: int, concurrency: int, calls: int,
                     seconds: float) -> dict[str, float]:
    await run_workers(v.call, v.name, concurrency, concurrency * 8, 2.0)  # open the pool
    gc.collect()
    s0, c0, t0 = process_cpu_s(server_pid), time.process_time(), time.perf_counter()
    done = await run_workers(v.call, v.name, concurrency, calls, seconds)
    elapsed = time.perf_counter() - t0
    cpu, s1 = time.process_time() - c0, process_cpu_s(server_pid)
    server_share = (s1 - s0) / elapsed if s0 is not None and s1 is not None else float("nan")
    return {"calls": done, "seconds": elapsed, "cps": done / elapsed,
            "cpu_us": cpu / done * 1e6, "client_cpu_share": cpu / elapsed,
            "server_cpu_share": server_share}


async def best_throughput(variants: list[Variant], server_pid: int,
                          args: argparse.Namespace) -> dict[str, dict[str, float]]:
    best: dict[str, dict[str, float]] = {}
    for _ in range(args.rounds):
        for v in variants:
            t = await throughput(v, server_pid, CONCURRENCY, args.tp_calls, args.tp_seconds)
            if v.name not in best or t["cps"] > best[v.name]["cps"]:
                best[v.name] = t
    return best


async def failover(victims: list[ServerProcess], hosted_url: str, open_calls: int,
                   block: int) -> dict[str, Any]:
    trials: list[dict[str, Any]] = []
    open_cmp: dict[str, Any] = {}
    for i, victim in enumerate(victims):
        cfg = LLMConfig(
            backends=[BackendConfig(name="local", base_url=victim.base_url, model=LOCAL_MODEL,
                                    kind="local"),
                      BackendConfig(name="hosted", base_url=hosted_url, model=HOSTED_MODEL,
                                    kind="hosted")],
            circuit=CircuitConfig(failure_threshold=3, cooldown_s=60))
        router = LLMRouter(cfg)
        try:
            for _ in range(50):
                r = await router.chat(MESSAGES)
                if r.backend != "local":
                    raise RuntimeError(f"warm-up served by {r.backend}")
            victim.kill()  # SIGKILL + reaped: the local server and its sockets are gone
            down = time.perf_counter()
            r = await router.chat(MESSAGES)
            first_ms = (time.perf_counter() - down) * 1000
            check(r.text, "failover")
            if r.backend != "hosted" or not r.used_fallback:
                raise RuntimeError(f"first call after the kill: {r.backend} {r.errors}")
            trial: dict[str, Any] = {"first_fallback_ms": first_ms,
                                     "first_error": r.errors.get("local", "")}
            closing: list[float] = []
            breaker = router.breakers["local"]
            while breaker.state != "open" and len(closing) < 10:
                t0 = time.perf_counter()
                r = await router.chat(MESSAGES)
                closing.append((time.perf_counter() - t0) * 1000)
                if r.backend != "hosted":
                    raise RuntimeError(f"served by {r.backend} with local dead")
            trial["until_open_ms"] = closing
            trial["failures_to_open"] = breaker.consecutive_failures
            trial["later_error"] = r.errors.get("local", "")
            trials.append(trial)
            if i == 0:
                open_cmp = await open_circuit_cost(router, hosted_url, open_calls, block)
        finally:
            await router.aclose()
    return {"trials": trials, "open": open_cmp}


async def open_circuit_cost(router: LLMRouter, hosted_url: str, calls: int,
                            block: int) -> dict[str, Any]:
    """Circuit open on local: router calls (hosted serves) vs direct calls to hosted."""

    class OpenRouter(Variant):
        name = "omium(open)"

        async def call(self) -> str:
            r = await router.chat(MESSAGES)
            if r.backend != "hosted" or "circuit open" not in r.errors.get("local", ""):
                raise RuntimeError(f"expected local skipped, got {r.backend} {r.errors}")
            return r.text

    direct = Direct(hosted_url, HOSTED_MODEL, name="direct(hosted)")
    await direct.open()
    try:
        res = await latency_c1([direct, OpenRouter()], calls, 100, block)
    finally:
        await direct.close()
    return res


def stubbed_router() -> LLMRouter:
    """A router whose one backend answers at once (``Backend.request`` replaced on the
    instance by a coroutine returning a fixed Completion): only the router's own work."""
    router = LLMRouter([BackendConfig(name="local", base_url="http://127.0.0.1:9/v1",
                                      model=LOCAL_MODEL, kind="local")])
    completion = Completion(EXPECTED, LOCAL_MODEL, Usage(9, 9), {})

    async def fake_request(path: str, body: dict[str, Any], on_delta: Any = None,
                           on_chunk: Any = None) -> Completion:
        return completion

    router.backends[0].request = fake_request  # type: ignore[method-assign]
    return router


async def router_own_cost(n: int) -> dict[str, float]:
    """``router.chat`` with the HTTP call stubbed: the router's own CPU per call."""
    router = stubbed_router()
    for _ in range(min(n, 2000)):
        await router.chat(MESSAGES)
    gc.collect()
    t0 = time.perf_counter()
    for _ in range(n):
        await router.chat(MESSAGES)
    routed = time.perf_counter() - t0
    stub = router.backends[0].request
    t0 = time.perf_counter()
    for _ in range(n):
        await stub("/chat/completions", {})
    bare = time.perf_counter() - t0
    await router.aclose()
    return {"router_us": routed / n * 1e6, "bare_await_us": bare / n * 1e6,
            "own_us": (routed - bare) / n * 1e6}


async def profile_router(base_url: str, n: int) -> str:
    """cProfile: N real router calls (omium/prometheus frames), then N stubbed ones (all)."""
    out = io.StringIO()
    v = Omium(base_url)
    try:
        for _ in range(200):
            await v.call()
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(n):
            await v.call()
        prof.disable()
    finally:
        await v.close()
    out.write(f"--- cProfile: {n} router.chat calls, c=1, real HTTP; omium and prometheus "
              f"frames by cumulative time (profiler overhead inflates every figure)\n")
    pstats.Stats(prof, stream=out).sort_stats("cumtime").print_stats(r"omium|prometheus", 16)
    router = stubbed_router()
    for _ in range(200):
        await router.chat(MESSAGES)
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(n):
        await router.chat(MESSAGES)
    prof.disable()
    await router.aclose()
    out.write(f"--- cProfile: {n} router.chat calls with the HTTP call stubbed (the router's "
              f"own work), top by tottime\n")
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(22)
    return out.getvalue()
