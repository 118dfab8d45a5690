"""The OpenAI-compatible gateway (``/v1`` on ``omium serve``): throughput at 64 connections and
the latency it adds over calling the router in-process, on loopback.

What is measured
    Three processes: the project's fake OpenAI server (``python -m omium.testing.fake_server``),
    a real ``omium serve --no-workers`` (one process, SQLite, the fake server as its one
    local backend via ``OMIUM_LLM_LOCAL_URL``), and this client (single-threaded asyncio,
    keep-alive aiohttp). Every call is the same one-message chat completion and is billed:
    the serve's gateway writes a usage record per call to its database, and the in-process
    baseline is an ``LLMRouter`` with a ``Ledger`` on a SQLite store of its own, so both do
    the same billing work and the difference is the gateway: HTTP in and out, the key check,
    parsing and answering in OpenAI's shape.

    1. Added latency at concurrency 1: ``--calls`` sequential calls per variant after
       ``--warmup``, interleaved in blocks of 100 so drift hits both alike. Added = gateway
       p50 - router p50 (and p99, mean).
    2. Throughput at concurrency ``--concurrency`` (64): that many workers posting to the
       gateway until ``--tp-calls`` are done or ``--tp-seconds`` pass, best of ``--rounds``;
       the in-process router at the same concurrency for reference. Calls/s, errors, and the
       serve process's CPU share (is it the bottleneck?).
    3. The bill: the usage records the serve wrote equal the calls it answered 200, each
       charged the local price ($0.001).
    The tenant is the built-in unlimited ``local`` (one write per call); ``--limited`` bills
    a limited tenant with credits instead (a hold before each call, settled after: two).
    4. The peer, when a ``litellm`` executable is found (``--litellm PATH``, else on PATH):
       LiteLLM's proxy (``litellm --config``, one deployment ``openai/smollm2`` on the same
       fake server, a master key, no database: it keeps no usage records, so it does less
       per call than the gateway), pinned like the serve, measured by the same client in the
       same run, latency interleaved with the other two. Install it apart from Omium's
       environment (its pins differ): ``python -m venv /tmp/ll && /tmp/ll/bin/pip install
       'litellm[proxy]'``, then ``--litellm /tmp/ll/bin/litellm``.

    With >= 2 cores the serve process is pinned to the second core and the client and the
    fake server to the first (``--no-pin`` leaves scheduling alone): the gateway gets one core.

How to run (from the repository root; ~30 s with the defaults, bounded by the options)
    python -m bench.gateway
    python -m bench.gateway --quick
    python -m bench.gateway --limited --tp-seconds 10
    python -m bench.gateway --litellm /tmp/ll/bin/litellm

The last line printed is a one-line JSON summary.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench._common import ROOT
from bench._machine import free_port, process_cpu_s, usable_cpus
from bench._router_util import ServerProcess, ms_summary, pin_self, table
from omium.billing import Ledger
from omium.llm import LLMRouter, parse_config
from omium.store import open_store

PROMPT = "Summarise the quarterly report in one line please"
BODY = {"model": "smollm2", "messages": [{"role": "user", "content": PROMPT}]}
EXPECTED = f"echo: {PROMPT}"


def _stop(proc: subprocess.Popen[Any]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class Serve:
    """``omium serve --no-workers`` in its own process, the fake server as its backend."""

    def __init__(self, fake_url: str, db_dir: Path, cpu: int | None) -> None:
        self.port = free_port()
        self.db = db_dir / "serve.db"
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "OMIUM_LLM_LOCAL_URL": fake_url, "OMIUM_LLM_LOCAL_MODEL": "smollm2",
               "PYTHONPATH": str(ROOT)}
        env.pop("OMIUM_LLM_CONFIG", None)
        pin = None if cpu is None else (lambda: os.sched_setaffinity(0, {cpu}))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "omium.cli", "serve", "--no-workers", "--port",
             str(self.port), "--db", f"sqlite:///{self.db}"], env=env, cwd=db_dir,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            text=True, preexec_fn=pin)
        self.key = ""

    async def ready(self, timeout_s: float = 60.0) -> None:
        assert self.proc.stderr is not None
        deadline = time.monotonic() + timeout_s
        while not self.key:
            line = await asyncio.to_thread(self.proc.stderr.readline)
            if not line:
                raise RuntimeError(f"omium serve exited ({self.proc.poll()})")
            if found := re.search(r"key: (\S+)", line):
                self.key = found.group(1)
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                try:
                    async with http.get(f"{self.url}/health") as resp:
                        if resp.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
        raise RuntimeError("omium serve did not answer /health")

    def stop(self) -> None:
        _stop(self.proc)

    def usage(self) -> tuple[int, int]:
        """(usage records, their summed cost in nano-dollars) in the serve's database."""
        with sqlite3.connect(self.db) as conn:
            n, total = conn.execute(
                "SELECT COUNT(*), COALESCE(SUM(cost_nano), 0) FROM usage_records").fetchone()
        return int(n), int(total)


class LiteLLMProxy:
    """LiteLLM's proxy in its own process: one deployment on the fake server, no database."""

    KEY = "sk-omium-bench"

    def __init__(self, exe: str, fake_url: str, workdir: Path, cpu: int | None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = workdir / "litellm.yaml"
        config.write_text(json.dumps({  # JSON is YAML
            "model_list": [{"model_name": "smollm2", "litellm_params": {
                "model": "openai/smollm2", "api_base": fake_url, "api_key": "none"}}],
            "general_settings": {"master_key": self.KEY},
            "litellm_settings": {"telemetry": False}}))
        pin = None if cpu is None else (lambda: os.sched_setaffinity(0, {cpu}))
        env = {**os.environ, "LITELLM_LOG": "ERROR", "LITELLM_TELEMETRY": "False",
               "LITELLM_LOCAL_MODEL_COST_MAP": "True"}  # no fetch of its price list
        self.proc = subprocess.Popen(
            [exe, "--config", str(config), "--host", "127.0.0.1", "--port", str(self.port),
             "--num_workers", "1"], env=env, cwd=workdir, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=pin)

    async def ready(self, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"litellm exited ({self.proc.returncode})")
                try:
                    async with http.get(f"{self.url}/health/liveliness") as resp:
                        if resp.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.2)
        raise RuntimeError("litellm's proxy did not answer /health/liveliness")

    def stop(self) -> None:
        _stop(self.proc)


class GatewayClient:
    """OpenAI chat completions over HTTP: Omium's gateway, or a peer proxy (``name``)."""

    def __init__(self, url: str, key: str, concurrency: int,
                 name: str = "gateway (HTTP)") -> None:
        self.name = name
        self.url, self.key, self.concurrency = f"{url}/v1/chat/completions", key, concurrency
        self.session: aiohttp.ClientSession | None = None
        self.ok = 0  # answers 200: each must have been billed once

    async def open(self) -> None:
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self.concurrency, keepalive_timeout=30),
            headers={"Authorization": f"Bearer {self.key}"})

    async def call(self) -> str:
        assert self.session is not None
        async with self.session.post(self.url, json=BODY) as resp:
            if resp.status != 200:
                raise RuntimeError(f"HTTP {resp.status}: {await resp.text()}")
            data = await resp.json()
        self.ok += 1
        return str(data["choices"][0]["message"]["content"])

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()


class RouterClient:
    name = "router in-process"

    def __init__(self, fake_url: str, db: Path, tenant: str) -> None:
        self.fake_url, self.db, self.tenant = fake_url, db, tenant
        self.store = open_store(f"sqlite:///{db}")
        self.router: LLMRouter | None = None

    async def open(self) -> None:
        await self.store.connect()
        ledger = Ledger(self.store)
        if self.tenant != "local":
            await ledger.add_credits(self.tenant, 10**9)
        self.router = LLMRouter(parse_config({"backends": [
            {"name": "local", "base_url": self.fake_url, "model": "smollm2"}]}), ledger=ledger)

    async def call(self) -> str:
        assert self.router is not None
        return (await self.router.chat(BODY["messages"], model="smollm2",  # type: ignore[arg-type]
                                       tenant_id=self.tenant)).text

    async def close(self) -> None:
        if self.router is not None:
            await self.router.aclose()
        await self.store.close()


async def timed(client: Any) -> int:
    start = time.perf_counter_ns()
    text = await client.call()
    took = time.perf_counter_ns() - start
    if text != EXPECTED:
        raise RuntimeError(f"{client.name}: unexpected answer {text!r}")
    return took


async def latency(clients: list[Any], calls: int, warmup: int) -> dict[str, dict[str, float]]:
    for c in clients:
        for _ in range(warmup):
            await timed(c)
    samples: dict[str, list[int]] = {c.name: [] for c in clients}
    block = 100
    for round_ in range(-(-calls // block)):
        order = clients if round_ % 2 == 0 else clients[::-1]
        for c in order:
            for _ in range(min(block, calls - round_ * block)):
                samples[c.name].append(await timed(c))
    return {name: ms_summary(ns) for name, ns in samples.items()}


async def throughput(client: Any, concurrency: int, calls: int, seconds: float,
                     serve_pid: int | None) -> dict[str, float]:
    await asyncio.gather(*(timed(client) for _ in range(concurrency)))  # open the pool
    left, done, errors = calls, 0, 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal left, done, errors
        while left > 0 and time.perf_counter() < deadline:
            left -= 1
            try:
                await client.call()
                done += 1
            except Exception:
                errors += 1

    cpu0 = process_cpu_s(serve_pid) if serve_pid else None
    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - start
    cpu1 = process_cpu_s(serve_pid) if serve_pid else None
    out = {"calls": done, "errors": errors, "seconds": wall, "calls_per_s": done / wall}
    if cpu0 is not None and cpu1 is not None:
        out["serve_cpu_share"] = (cpu1 - cpu0) / wall
    return out


async def main(args: argparse.Namespace) -> dict[str, Any]:
    cpus = usable_cpus()
    pinned = len(cpus) >= 2 and not args.no_pin
    if pinned:
        pin_self(cpus[0])
    fake = ServerProcess("fake", model="smollm2", cpu=cpus[0] if pinned else None)
    fake.spawn()
    fake.wait_ready()
    workdir = Path(tempfile.mkdtemp(prefix="omium-bench-gateway-"))
    serve = Serve(fake.base_url, workdir, cpus[1] if pinned else None)
    exe = args.litellm or shutil.which("litellm")
    peer = None if exe is None or args.no_litellm else LiteLLMProxy(
        exe, fake.base_url, workdir, cpus[1] if pinned else None)
    try:
        await serve.ready()
        tenant, key = "local", serve.key
        if args.limited:
            tenant, key = await _limited_tenant(serve)
        gateway = GatewayClient(serve.url, key, args.concurrency)
        router = RouterClient(fake.base_url, workdir / "router.db", tenant)
        clients: list[tuple[Any, int | None]] = [(gateway, serve.proc.pid), (router, None)]
        if peer is not None:
            await peer.ready()
            clients.append((GatewayClient(peer.url, peer.KEY, args.concurrency,
                                          name="LiteLLM proxy (HTTP)"), peer.proc.pid))
        for c, _ in clients:
            await c.open()
        try:
            lat = await latency([c for c, _ in clients], args.calls, args.warmup)
            tp: dict[str, dict[str, float]] = {}
            for _ in range(args.rounds):
                for c, pid in clients:
                    got = await throughput(c, args.concurrency, args.tp_calls,
                                           args.tp_seconds, pid)
                    if got["calls_per_s"] > tp.get(c.name, {}).get("calls_per_s", 0):
                        tp[c.name] = got
        finally:
            for c, _ in clients:
                await c.close()
        records, cost = serve.usage()
    finally:
        if peer is not None:
            peer.stop()
        serve.stop()
        fake.stop()
    if peer is None:
        print("bench.gateway: no LiteLLM row: "
              + ("--no-litellm" if args.no_litellm else "no litellm executable (--litellm PATH)"))
    return _report(args, lat, tp, gateway.name, router.name, (records, cost, gateway.ok),
                   pinned, tenant)


async def _limited_tenant(serve: Serve) -> tuple[str, str]:
    """A limited tenant with ample credits, made in the serve's database."""
    from omium.engine.tenants import create_tenant_with_key

    async with open_store(f"sqlite:///{serve.db}") as store:
        tenant, key = await create_tenant_with_key(store, "bench")
        await Ledger(store).add_credits(tenant, 10**9)
    return tenant, key


def _report(args: argparse.Namespace, lat: dict[str, dict[str, float]],
            tp: dict[str, dict[str, float]], gw: str, rt: str, bill: tuple[int, int, int],
            pinned: bool, tenant: str) -> dict[str, Any]:
    print(f"bench.gateway: Python {platform.python_version()}, {os.cpu_count()} cores"
          f"{' (serve pinned to one, client + fake server to the other)' if pinned else ''},"
          f" tenant {tenant!r}")
    print(table(["c=1", "p50 ms", "p90 ms", "p99 ms", "mean ms"], [
        [name, s["p50_ms"], s["p90_ms"], s["p99_ms"], s["mean_ms"]] for name, s in lat.items()]))
    added = {k: lat[gw][k] - lat[rt][k] for k in ("p50_ms", "p99_ms", "mean_ms")}
    print(f"added by the gateway: p50 {added['p50_ms']:+.3f} ms, p99 {added['p99_ms']:+.3f} ms,"
          f" mean {added['mean_ms']:+.3f} ms")
    print(table([f"c={args.concurrency}", "calls", "errors", "calls/s", "serve CPU"], [
        [name, int(r["calls"]), int(r["errors"]), r["calls_per_s"],
         f"{r['serve_cpu_share']:.0%}" if "serve_cpu_share" in r else ""]
        for name, r in tp.items()]))
    records, cost, answered = bill
    print(f"billed by the serve: {records} usage records for {answered} answers, "
          f"${cost / 1e9:.3f} (${cost / max(records, 1) / 1e9:.6f} per call)")
    summary = {"bench": "gateway", "added_p50_ms": round(added["p50_ms"], 3),
               "added_p99_ms": round(added["p99_ms"], 3),
               "gateway_calls_per_s": round(tp[gw]["calls_per_s"]),
               "router_calls_per_s": round(tp[rt]["calls_per_s"]),
               "gateway_errors": int(tp[gw]["errors"]), "usage_records": records,
               "answers": answered, "billed_exactly": records == answered and
               cost == records * 1_000_000,
               "targets_met": added["p50_ms"] < 2 and tp[gw]["calls_per_s"] >= 1000}
    peer = "LiteLLM proxy (HTTP)"
    if peer in tp:
        summary.update(litellm_calls_per_s=round(tp[peer]["calls_per_s"]),
                       litellm_p50_ms=round(lat[peer]["p50_ms"], 3),
                       gateway_over_litellm=round(tp[gw]["calls_per_s"]
                                                  / tp[peer]["calls_per_s"], 2))
        print(f"gateway / LiteLLM proxy: {summary['gateway_over_litellm']}x the calls/s; "
              f"c=1 p50 {lat[gw]['p50_ms']:.3f} vs {lat[peer]['p50_ms']:.3f} ms")
    print(json.dumps(summary))
    return summary


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--calls", type=int, default=2000, help="timed sequential calls per variant")
    p.add_argument("--warmup", type=int, default=200, help="untimed sequential calls first")
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--tp-calls", type=int, default=20000, help="calls per throughput round")
    p.add_argument("--tp-seconds", type=float, default=5.0, help="time cap per round")
    p.add_argument("--rounds", type=int, default=2, help="throughput rounds (best kept)")
    p.add_argument("--limited", action="store_true",
                   help="bill a limited tenant (a credit hold per call) instead of 'local'")
    p.add_argument("--no-pin", action="store_true", help="do not pin processes to cores")
    p.add_argument("--litellm", metavar="PATH", default=None,
                   help="the litellm executable for the peer row (default: litellm on PATH)")
    p.add_argument("--no-litellm", action="store_true", help="no LiteLLM proxy row")
    p.add_argument("--quick", action="store_true", help="a smoke run of a few seconds")
    args = p.parse_args(argv)
    if args.quick:
        args.calls, args.warmup, args.tp_calls, args.tp_seconds, args.rounds = 200, 20, 2000, 1, 1
    return args


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
