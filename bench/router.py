"""What Omium's LLM router adds on top of a plain pooled HTTP call, its throughput, and failover.

What is measured
    The OpenAI-compatible fake server (``python -m omium.testing.fake_server --port 0``) runs as a
    SEPARATE PROCESS, so client and server never share an event loop. Every client below runs
    in this process, single-threaded asyncio (plain asyncio loop unless ``--uvloop``), posting
    the same one-message chat completion (the server answers ``echo: <prompt>`` with usage).

    Clients ("variants"), all keep-alive pooled, 64 connections at most:
    * direct   - the baseline: one ``aiohttp.ClientSession`` posting the body and parsing the
                 JSON (same connector limit and timeouts as Omium's backend).
    * omium    - ``LLMRouter`` with one local backend, no ledger: ``await router.chat(msgs)``
                 (circuit breaker, pricing in Decimal, Prometheus metrics, result object).
    * omium.backend - Omium's ``Backend.request`` alone, no router: splits omium - direct
                 into the HTTP layer's share and the router's (``--no-backend-row`` skips it).
    * httpx    - ``httpx.AsyncClient`` (context only), unless ``--no-httpx``.
    * litellm  - ``litellm.Router`` with one ``openai/...`` deployment on the same server,
                 ``await router.acompletion(model="m", messages=msgs)``, when importable
                 (section 5 only).

    1. Added latency at concurrency 1: sequential calls (default 2000 each after 200 warm-up),
       interleaved in blocks of 100 (order rotated every round) so drift hits all alike.
       Added latency = variant - direct: difference of p50s, of p99s, and of means; plus the
       client CPU per call (process CPU time / calls), which is far less noisy.
    2. Throughput at concurrency 64: 64 workers, a fixed number of calls (default 20,000)
       or a time cap (default 5 s) whichever ends first, after a warm-up that opens the pool;
       best of ``--rounds`` (default 2) rounds, variants alternating. Calls/s, client CPU per
       call and the server's CPU share during the window (is the server the bottleneck?).
    3. The router's own cost with the HTTP call stubbed out (``Backend.request`` replaced on
       the instance by a coroutine returning a fixed Completion): microseconds per call.
    4. Failover, with one more server process per trial: ``local`` (the victim), and the
       main server as ``hosted``. After 50 warm-up calls on local, the local server is
       SIGKILLed and reaped; (a) time from then to the first answer (it comes from hosted and
       includes the failed attempt on local plus opening the first connection to hosted),
       then the calls that still try local until the circuit opens (3 failures); (b) with the
       circuit open, N calls through the router (local skipped, hosted serves) vs direct
       pooled calls to the hosted server, interleaved: p50/p99 and the difference.
    5. LiteLLM, last and alone: its per-call background logging work (asyncio tasks and a
       worker thread) outlives each call and would land on whatever runs next, so it is not
       interleaved; it is compared with the direct/omium figures of sections 1-2 (and a fresh
       direct block measured just before it, to show no drift). Ratios Omium/LiteLLM.
    ``--profile N`` first cProfiles N real router calls and N stubbed ones (file:line).

    With >= 2 usable cores, this process is pinned to the first core and the server processes
    to the second (``--no-pin`` to leave scheduling alone), so "one core" for the client is
    literal. On a 2-core machine client and server still compete for the machine (caches,
    memory bandwidth, other tenants such as a concurrent test run), so absolute figures are
    pessimistic; the ratios against baselines measured in the same run are what to quote.

How to run (from the repository root; ~1 min with the defaults on 2 cores, litellm installed)
    python -m bench.router
    python -m bench.router --quick                 # smoke run, a few seconds
    python -m bench.router --calls 5000 --tp-calls 50000 --tp-seconds 10
    python -m bench.router --no-litellm --profile 2000   # cProfile the router, top costs
    python -m bench.router --litellm-model openai/gpt-3.5-turbo   # litellm prices the call

LiteLLM is optional and not a project dependency (``pip install litellm``); its remote cost
map fetch is disabled (``LITELLM_LOCAL_MODEL_COST_MAP=True``) since nothing outside loopback
is used. The last line printed is a one-line JSON summary.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import time
from typing import Any

from bench._common import percentile
from bench._machine import usable_cpus
from bench._router_clients import (
    CONCURRENCY,
    Direct,
    Httpx,
    LiteLLM,
    Omium,
    OmiumBackend,
    Variant,
    import_litellm,
)
from bench._router_measure import (
    best_throughput,
    failover,
    latency_c1,
    profile_router,
    router_own_cost,
)
from bench._router_util import ServerProcess, pin_self, start_servers, table

# -- the run ------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Omium LLM router: added latency, throughput, failover (see docstring).")
    p.add_argument("--calls", type=int, default=2000, help="c=1 calls per variant (2000)")
    p.add_argument("--warmup", type=int, default=200, help="c=1 warm-up calls (200)")
    p.add_argument("--block", type=int, default=100, help="interleaving block size (100)")
    p.add_argument("--tp-calls", type=int, default=20_000, help="c=64 calls per round (20000)")
    p.add_argument("--tp-seconds", type=float, default=5.0, help="c=64 time cap per round (5)")
    p.add_argument("--rounds", type=int, default=2, help="throughput rounds, best kept (2)")
    p.add_argument("--stub-calls", type=int, default=20_000,
                   help="router calls with the HTTP call stubbed (20000)")
    p.add_argument("--failover-trials", type=int, default=3, help="kill-and-fail-over trials")
    p.add_argument("--open-calls", type=int, default=1000,
                   help="calls per side with the circuit open (1000)")
    p.add_argument("--no-httpx", action="store_true", help="skip the httpx baseline")
    p.add_argument("--no-backend-row", action="store_true",
                   help="skip the omium.backend row (Backend.request without the router)")
    p.add_argument("--no-litellm", action="store_true", help="skip LiteLLM")
    p.add_argument("--litellm-model", default="openai/fake-model",
                   help="LiteLLM deployment model (default openai/fake-model)")
    p.add_argument("--no-pin", action="store_true", help="do not pin client/server to cores")
    p.add_argument("--uvloop", action="store_true", help="client on uvloop (default asyncio)")
    p.add_argument("--profile", type=int, default=0, metavar="N",
                   help="also cProfile N router calls and print the top costs")
    p.add_argument("--quick", action="store_true", help="small counts: a smoke run")
    args = p.parse_args(argv)
    if args.quick:
        args.calls, args.warmup, args.tp_calls, args.tp_seconds = 200, 20, 2000, 1.0
        args.rounds, args.stub_calls, args.failover_trials, args.open_calls = 1, 2000, 1, 100
    return args


def fmt_ms(v: float) -> str:
    return f"{v:+.3f}"


def added_vs(s: dict[str, float], d: dict[str, float]) -> dict[str, float]:
    return {"p50_ms": s["p50_ms"] - d["p50_ms"], "p99_ms": s["p99_ms"] - d["p99_ms"],
            "mean_ms": s["mean_ms"] - d["mean_ms"], "cpu_us": s["cpu_us"] - d["cpu_us"]}


def latency_table(lat: dict[str, dict[str, Any]], base: str = "direct") -> str:
    d = lat[base]
    rows = []
    for name, s in lat.items():
        a = added_vs(s, d)
        rows.append([name, s["p50_ms"], s["p90_ms"], s["p99_ms"], s["mean_ms"], s["cpu_us"],
                     *(["", "", "", ""] if name == base else
                       [fmt_ms(a["p50_ms"]), fmt_ms(a["p99_ms"]), fmt_ms(a["mean_ms"]),
                        f"{a['cpu_us']:+.0f}"])])
    return table(["variant", "p50 ms", "p90 ms", "p99 ms", "mean ms", "cpu us/call",
                  "+p50 ms", "+p99 ms", "+mean ms", "+cpu us"], rows)


def throughput_table(best: dict[str, dict[str, float]]) -> str:
    dc = best["direct"]["cps"]
    return table(["variant", "calls", "seconds", "calls/s", "vs direct", "cpu us/call",
                  "client cpu", "server cpu"],
                 [[n, int(t["calls"]), t["seconds"], t["cps"], f"{t['cps'] / dc:.2f}x",
                   t["cpu_us"], f"{t['client_cpu_share']:.0%}", f"{t['server_cpu_share']:.0%}"]
                  for n, t in best.items()])


def rounded(d: dict[str, float], keys: tuple[str, ...], nd: int = 4) -> dict[str, float]:
    return {k: round(d[k], nd) for k in keys}


async def bench(args: argparse.Namespace, servers: dict[str, ServerProcess]) -> dict[str, Any]:
    base = servers["main"].base_url
    variants: list[Variant] = [Direct(base), Omium(base)]
    if not args.no_backend_row:
        variants.append(OmiumBackend(base))
    if not args.no_httpx:
        variants.append(Httpx(base))
    for v in variants:
        await v.open()
    summary: dict[str, Any] = {}
    try:
        # 1. added latency, c=1
        lat = await latency_c1(variants, args.calls, args.warmup, args.block)
        print(f"\n## 1. Latency at concurrency 1 ({args.calls} sequential calls per variant after "
              f"{args.warmup} warm-up, interleaved in blocks of {args.block})")
        print(latency_table(lat))
        added = added_vs(lat["omium"], lat["direct"])
        print(f"omium added: p50 {added['p50_ms'] * 1000:+.0f} us (target < 1000 us: "
              f"{'PASS' if added['p50_ms'] < 1 else 'FAIL'}), p99 {added['p99_ms'] * 1000:+.0f}"
              f" us (target < 5000 us: {'PASS' if added['p99_ms'] < 5 else 'FAIL'}), mean "
              f"{added['mean_ms'] * 1000:+.0f} us, client CPU {added['cpu_us']:+.0f} us/call")
        keys = ("p50_ms", "p99_ms", "mean_ms", "cpu_us")
        summary["c1"] = {n: rounded(s, keys) for n, s in lat.items()}
        summary["c1"]["omium_added"] = rounded(added, keys)

        # 2. throughput, c=64
        best = await best_throughput(variants, servers["main"].pid, args)
        print(f"\n## 2. Throughput at concurrency {CONCURRENCY} ({args.tp_calls} calls or "
              f"{args.tp_seconds:g} s per round, whichever first; best of {args.rounds})")
        print(throughput_table(best))
        oc = best["omium"]["cps"]
        print(f"omium: {oc:,.0f} calls/s with the client on one core (target >= 1000: "
              f"{'PASS' if oc >= 1000 else 'FAIL'}), {oc / best['direct']['cps']:.2f}x direct; "
              f"{1e6 / best['omium']['cpu_us']:,.0f} calls per client CPU-second")
        summary["c64"] = {n: {"cps": round(t["cps"], 1), "cpu_us": round(t["cpu_us"], 1),
                              "server_cpu_share": round(t["server_cpu_share"], 3)}
                          for n, t in best.items()}
    finally:
        for v in variants[1:]:
            await v.close()

    # 3. the router's own cost
    own = await router_own_cost(args.stub_calls)
    print(f"\n## 3. Router's own cost, HTTP stubbed ({args.stub_calls} calls): "
          f"{own['router_us']:.1f} us/call through router.chat, {own['bare_await_us']:.2f} us "
          f"for the stub alone -> {own['own_us']:.1f} us of routing per call")
    summary["router_own_us"] = round(own["own_us"], 2)

    # 4. failover
    fo = await failover([servers[k] for k in servers if k.startswith("victim")],
                        base, args.open_calls, args.block)
    print(f"\n## 4. Failover: local server SIGKILLed (and reaped), hosted takes over "
          f"({len(fo['trials'])} trials; circuit opens after 3 failures)")
    rows = [[f"trial {i}", t["first_fallback_ms"],
             " ".join(f"{x:.2f}" for x in t["until_open_ms"]), t["failures_to_open"],
             t["first_error"][:64]] for i, t in enumerate(fo["trials"], 1)]
    print(table(["", "kill->1st answer ms", "next calls ms", "fails", "local error (1st call)"],
                rows))
    if fo["trials"]:
        print(f"later calls' local error: {fo['trials'][-1]['later_error'][:90]}")
    firsts = [t["first_fallback_ms"] for t in fo["trials"]]
    op = fo["open"]
    dh, oh = op["direct(hosted)"], op["omium(open)"]
    print(f"circuit open on local: {args.open_calls} calls each, interleaved, vs direct calls "
          f"to the hosted server:")
    print(latency_table(op, "direct(hosted)"))
    open_added = added_vs(oh, dh)
    print(f"open-circuit call = hosted latency {fmt_ms(open_added['p50_ms'])} ms at p50 "
          f"({fmt_ms(open_added['p99_ms'])} ms at p99, {open_added['cpu_us']:+.0f} us client "
          f"CPU); with one healthy backend the router added {fmt_ms(added['p50_ms'])} ms at p50")
    summary["failover"] = {
        "first_fallback_ms": [round(x, 3) for x in firsts],
        "first_fallback_ms_median": round(percentile(firsts, 50), 3),
        "open_p50_ms": round(oh["p50_ms"], 4), "hosted_direct_p50_ms": round(dh["p50_ms"], 4),
        "open_added_p50_ms": round(open_added["p50_ms"], 4)}

    # 5. LiteLLM, last: its background logging tasks would slow whatever ran after it
    summary["litellm"] = await litellm_phase(args, servers, variants[0], lat, best, added)
    await variants[0].close()
    return summary


async def litellm_phase(args: argparse.Namespace, servers: dict[str, ServerProcess],
                        direct: Variant, lat: dict[str, dict[str, Any]],
                        best: dict[str, dict[str, float]],
                        added: dict[str, float]) -> dict[str, Any]:
    print("\n## 5. LiteLLM")
    if args.no_litellm:
        print("litellm: skipped (--no-litellm)")
        return {"status": "skipped"}
    litellm, note = import_litellm()
    if litellm is None:
        print(f"litellm: {note}")
        return {"status": note}
    v = LiteLLM(litellm, servers["main"].base_url, args.litellm_model)
    try:
        # A fresh direct block right before, then LiteLLM alone (not interleaved: its
        # leftover background work would land on the direct calls).
        pre = await latency_c1([direct], args.calls, args.warmup // 2, args.block)
        lt = await latency_c1([v], args.calls, args.warmup, args.block)
        tp = await best_throughput([v], servers["main"].pid, args)
    finally:
        await v.close()
    c1 = {"direct (section 1)": lat["direct"], "direct (just before)": pre["direct"],
          "omium (section 1)": lat["omium"], f"litellm {note}": lt["litellm"]}
    print(f"litellm {note}, model {args.litellm_model!r}, c=1: {args.calls} calls after "
          f"{args.warmup} warm-up; +columns vs direct (section 1)")
    print(latency_table(c1, "direct (section 1)"))
    la = added_vs(lt["litellm"], lat["direct"])
    o, lo = lat["omium"], lt["litellm"]
    print(f"added latency, Omium vs LiteLLM: p50 {added['p50_ms']:.3f} vs {la['p50_ms']:.3f} ms, "
          f"mean {added['mean_ms']:.3f} vs {la['mean_ms']:.3f} ms; Omium/LiteLLM end-to-end "
          f"p50 {o['p50_ms'] / lo['p50_ms']:.3f}, client CPU/call "
          f"{o['cpu_us'] / lo['cpu_us']:.3f}")
    both = {"direct": best["direct"], "omium": best["omium"], "litellm": tp["litellm"]}
    print(f"c={CONCURRENCY} throughput (direct and omium from section 2):")
    print(throughput_table(both))
    ratio = best["omium"]["cps"] / tp["litellm"]["cps"]
    print(f"Omium/LiteLLM throughput: {ratio:.2f}x")
    keys = ("p50_ms", "p99_ms", "mean_ms", "cpu_us")
    return {"status": f"version {note}", "model": args.litellm_model,
            "c1": rounded(lo, keys), "c1_added": rounded(la, keys),
            "c64_cps": round(tp["litellm"]["cps"], 1),
            "omium_over_litellm": {"added_p50": round(added["p50_ms"] / la["p50_ms"], 4),
                                   "e2e_p50": round(o["p50_ms"] / lo["p50_ms"], 4),
                                   "c64_cps": round(ratio, 2)}}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    cpus = usable_cpus()
    client_cpu = server_cpu = None
    if not args.no_pin and len(cpus) >= 2:
        client_cpu, server_cpu = cpus[0], cpus[1]
    servers = {"main": ServerProcess("main", cpu=server_cpu)}
    for i in range(args.failover_trials):
        servers[f"victim{i}"] = ServerProcess(f"victim{i}", cpu=server_cpu)
    started = time.perf_counter()
    try:
        start_servers(list(servers.values()))
        pinned = client_cpu is not None and pin_self(client_cpu)
        print(f"# omium LLM router bench - Python {platform.python_version()}, "
              f"{platform.machine()}, {os.cpu_count()} cores, client loop "
              f"{'uvloop' if args.uvloop else 'asyncio'} (single-threaded)")
        print(f"# fake server: separate process(es), uvloop if installed (main pid "
              f"{servers['main'].pid}, {servers['main'].base_url}); "
              f"{args.failover_trials} more for failover")
        if pinned:
            print(f"# client pinned to CPU {client_cpu}, servers to CPU {server_cpu}")
        print(f"# NOTE: {len(cpus)} usable cores: client and server processes compete for this "
              f"machine; absolute figures are pessimistic, same-run ratios are the point")
        runner_kw: dict[str, Any] = {}
        if args.uvloop:
            import uvloop

            runner_kw["loop_factory"] = uvloop.new_event_loop
        with asyncio.Runner(**runner_kw) as runner:
            if args.profile:  # before LiteLLM is imported and leaves work behind
                print(runner.run(profile_router(servers["main"].base_url, args.profile)))
            summary = runner.run(bench(args, servers))
    finally:
        for s in servers.values():
            s.stop()
    summary = {"bench": "router", "python": platform.python_version(), "cores": len(cpus),
               "pinned": client_cpu is not None, "loop": "uvloop" if args.uvloop else "asyncio",
               **summary,
               "targets": {"added_p50_lt_1ms": summary["c1"]["omium_added"]["p50_ms"] < 1,
                           "added_p99_lt_5ms": summary["c1"]["omium_added"]["p99_ms"] < 5,
                           "c64_ge_1000_cps": summary["c64"]["omium"]["cps"] >= 1000},
               "wall_s": round(time.perf_counter() - started, 1)}
    print(f"\n# total {summary['wall_s']} s")
    print(json.dumps(summary, separators=(",", ":")))


if __name__ == "__main__":
    main()
