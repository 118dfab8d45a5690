"""Handoff latency: JSON Schema validation + acknowledgements of a ~10 KB payload.

What is measured
    ``await HandoffProtocol(...).initiate_handoff(...)`` of one realistic loan application
    (``bench.agents.applicant_payload``: a nested applicant record with 48 card
    transactions, ~10 KB as JSON) against a matching JSON Schema 2020-12
    (``bench.agents.APPLICANT_SCHEMA``: ``$defs``/``$ref``, patterns, enums,
    ``additionalProperties: false``), from one sender to one receiver, N times after a
    warm-up. Wall-clock time around the call (``time.perf_counter``), in four modes:

    * protocol          - no store, receiver known by id only (valid data is accepted without
                          asking): validation + the majority rule;
    * protocol+hook     - no store, the receiver is a ``PythonAgent`` built from an
                          ``AgentSpec`` whose definition has ``callable`` and ``accept``
                          (``bench.agents:score`` / ``bench.agents:accept_applicant``), so
                          its accept hook is asked for an ack every time;
    * protocol+hook+sqlite - as above with a SQLite store (temp file, the store's defaults:
                          WAL, synchronous=NORMAL) and ``persist=True``: each handoff record
                          is written in its own transaction before the call returns;
    * validation only   - ``validator.is_valid(payload)`` alone, for reference.

    The validator is compiled once (the protocol caches it per schema object); the warm-up
    pays for that. p50/p99 are nearest-rank percentiles. The target is p99 < 5 ms for the
    handoff itself (the two store-less modes).

How to run (from the repository root; ~30-60 s on 2 cores with the defaults)
    python -m bench.handoff_latency
    python -m bench.handoff_latency --handoffs 5000 --transactions 80

The last line printed is a one-line JSON summary (for quoting in a README).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from typing import Any

from jsonschema import Draft202012Validator

from bench._common import ROOT, add_timed_counts, percentile
from bench.agents import APPLICANT_SCHEMA, applicant_payload
from omium.agents.python import PythonAgent
from omium.coordination.handoff import HandoffProtocol
from omium.schemas import compiled
from omium.store import open_store
from omium.workflow.model import AgentSpec

TARGET_P99_MS = 5.0
RECEIVER = "credit_scorer"
SENDER = "kyc_agent"


def receiver_agent() -> PythonAgent:
    spec = AgentSpec(id=RECEIVER, framework="python",
                     definition={"callable": "bench.agents:score",
                                 "accept": "bench.agents:accept_applicant"},
                     input_schema=APPLICANT_SCHEMA)
    agent = PythonAgent(spec, str(ROOT))
    assert agent.has_accept_hook
    return agent


async def timed(call: Callable[[int], Awaitable[Any]], n: int, warmup: int) -> list[float]:
    for i in range(warmup):
        await call(-1 - i)
    gc.collect()
    times = []
    for i in range(n):
        started = time.perf_counter()
        await call(i)
        times.append((time.perf_counter() - started) * 1000)
    return times


async def run(n: int, warmup: int, payload: dict[str, Any], db: str) -> dict[str, list[float]]:
    schema = APPLICANT_SCHEMA
    results: dict[str, list[float]] = {}

    def handoff_with(proto: HandoffProtocol, persist: bool) -> Callable[[int], Awaitable[Any]]:
        async def call(i: int) -> None:
            result = await proto.initiate_handoff(f"handoff-{i}", SENDER, [RECEIVER], payload,
                                                  schema, persist=persist)
            if not result.ok or not result.acks.get(RECEIVER):
                raise RuntimeError(f"handoff refused: {result.error} {result.reasons}")
        return call

    pure = Draft202012Validator(schema)  # the baseline: the jsonschema library alone
    fast = compiled(schema)  # what the protocol uses (jsonschema-rs when installed)

    async def validate_pure(i: int) -> None:
        if not pure.is_valid(payload):
            raise RuntimeError("payload does not match the schema")

    async def validate_fast(i: int) -> None:
        if not fast.is_valid(payload):
            raise RuntimeError("payload does not match the schema")

    agent = receiver_agent()
    results["jsonschema alone"] = await timed(validate_pure, n, warmup)
    results["omium validation"] = await timed(validate_fast, n, warmup)
    results["protocol"] = await timed(handoff_with(HandoffProtocol(), False), n, warmup)
    results["protocol+hook"] = await timed(
        handoff_with(HandoffProtocol(receivers={RECEIVER: agent}), False), n, warmup)
    store = open_store(f"sqlite:///{db}")
    await store.connect()
    try:
        proto = HandoffProtocol(store, receivers={RECEIVER: agent})
        results["protocol+hook+sqlite"] = await timed(handoff_with(proto, True), n, warmup)
        stored = await store.get_handoffs(f"handoff-{n - 1}")
        if len(stored) != 1 or stored[0].status != "success":
            raise RuntimeError(f"expected one stored successful handoff, got {stored!r}")
    finally:
        await store.close()
    return results


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Handoff latency (JSON Schema 2020-12 validation + acks) of a ~10 KB "
                    "applicant record, without a store, with an accept hook, and with SQLite.")
    add_timed_counts(parser, "--handoffs", "handoffs per mode", 2000, 100)
    parser.add_argument("--transactions", type=int, default=48,
                        help="transactions in the applicant record (default 48: ~10 KB)")
    args = parser.parse_args(argv)
    if args.handoffs < 1 or args.warmup < 0 or args.transactions < 1:
        parser.error("--handoffs and --transactions must be >= 1, --warmup >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    payload = applicant_payload(args.transactions)
    size = len(json.dumps(payload, separators=(",", ":")).encode())
    print(f"handoff_latency: {args.handoffs} handoffs per mode (+{args.warmup} warm-up), "
          f"payload {size} bytes ({args.transactions} transactions), "
          f"Python {platform.python_version()}, {os.cpu_count()} CPUs", file=sys.stderr)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="omium-bench-") as tmp:
        results = asyncio.run(run(args.handoffs, args.warmup, payload, f"{tmp}/handoffs.db"))
    print(f"  done in {time.perf_counter() - started:.1f}s", file=sys.stderr)

    stats = {mode: {"p50_ms": percentile(t, 50), "p99_ms": percentile(t, 99),
                    "mean_ms": sum(t) / len(t), "max_ms": max(t)}
             for mode, t in results.items()}
    head = f"{'mode':<24}{'p50 ms':>9}{'p99 ms':>9}{'mean ms':>9}{'max ms':>9}  p99 < 5 ms"
    print(head)
    print("-" * len(head))
    for mode, s in stats.items():
        ok = "yes" if s["p99_ms"] < TARGET_P99_MS else "NO"
        print(f"{mode:<24}{s['p50_ms']:>9.3f}{s['p99_ms']:>9.3f}{s['mean_ms']:>9.3f}"
              f"{s['max_ms']:>9.3f}  {ok}")
    handoff_modes = ("protocol", "protocol+hook")
    passed = all(stats[m]["p99_ms"] < TARGET_P99_MS for m in handoff_modes)
    print(f"p99 < {TARGET_P99_MS:g} ms for the handoff (no store, with and without hook): "
          f"{'PASS' if passed else 'FAIL'}")
    summary = {
        "bench": "handoff_latency", "handoffs": args.handoffs, "warmup": args.warmup,
        "payload_bytes": size, "transactions": args.transactions,
        "python": platform.python_version(), "cpus": os.cpu_count(),
        "results": {m: {k: round(v, 4) for k, v in s.items()} for m, s in stats.items()},
        "target_p99_ms": TARGET_P99_MS, "p99_under_target": passed,
    }
    print(json.dumps(summary, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
