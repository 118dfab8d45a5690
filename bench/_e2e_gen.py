"""The load generator of ``bench/e2e.py``, in its own spawned process: an aiohttp client
holding C keep-alive connections in a closed loop that POSTs exactly N executions (each
connection takes the next number until N are sent), recording each request's start (wall
clock, comparable with the ``finished_at`` the workers store), latency and status."""

from __future__ import annotations

import asyncio
import json
import multiprocessing as mp
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

ERROR_SAMPLES = 5


@dataclass
class SubmitResult:
    starts: list[float] = field(default_factory=list)  # time.time() at each request's start
    latencies: list[float] = field(default_factory=list)  # seconds
    statuses: list[int] = field(default_factory=list)  # -1: an exception
    ids: list[str] = field(default_factory=list)  # accepted execution ids
    errors: dict[str, int] = field(default_factory=dict)
    samples: list[str] = field(default_factory=list)
    cpu_s: float = 0.0
    failure: str | None = None


async def _submit(base: str, key: str, workflow_id: str, n: int, connections: int,
                  timeout_s: float) -> SubmitResult:
    import aiohttp

    res = SubmitResult()
    errors: Counter[str] = Counter()
    todo = iter(range(n))
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(base, connector=connector, headers=headers,
                                     timeout=aiohttp.ClientTimeout(total=60)) as session:
        deadline = time.monotonic() + timeout_s

        async def connection() -> None:
            for i in todo:
                if time.monotonic() > deadline:
                    errors["submit timeout"] += 1
                    return
                body = json.dumps({"workflow_id": workflow_id, "inputs": {
                    "applicant_id": f"E2E-{i:07d}", "step": 0}}).encode()
                started, t = time.time(), time.perf_counter()
                payload = b""
                try:
                    async with session.post("/api/v1/executions", data=body) as r:
                        payload, status = await r.read(), r.status
                except Exception as err:  # counted, never fatal
                    status = -1
                    errors[type(err).__name__] += 1
                res.starts.append(started)
                res.latencies.append(time.perf_counter() - t)
                res.statuses.append(status)
                if status == 202:
                    res.ids.append(json.loads(payload)["execution_id"])
                else:
                    if status > 0 and len(res.samples) < ERROR_SAMPLES:
                        res.samples.append(f"POST /executions -> {status}: {payload[:300]!r}")
                    await asyncio.sleep(0.05)  # a refused connection must not spin

        await asyncio.gather(*(connection() for _ in range(connections)))
    res.errors = dict(errors)
    return res


def _main(args: tuple[Any, ...], queue: Any) -> None:
    started = time.process_time()
    try:
        try:
            import uvloop

            result = uvloop.run(_submit(*args))
        except ImportError:
            result = asyncio.run(_submit(*args))
    except BaseException as err:  # reported to the parent
        result = SubmitResult(failure=f"{type(err).__name__}: {err}")
    result.cpu_s = time.process_time() - started
    queue.put(result)


class Submitter:
    """``start`` spawns the generator process; ``result`` waits for what it sent back."""

    def __init__(self, base: str, key: str, workflow_id: str, n: int, connections: int,
                 timeout_s: float) -> None:
        ctx = mp.get_context("spawn")
        self.queue = ctx.Queue()
        self.timeout_s, self.n = timeout_s, n
        self.proc = ctx.Process(target=_main, daemon=True, args=(
            (base, key, workflow_id, n, connections, timeout_s), self.queue))

    def start(self) -> None:
        self.proc.start()

    def poll(self) -> SubmitResult | None:
        """Its result once the process has sent it (None before)."""
        try:
            return self.queue.get_nowait()  # type: ignore[no-any-return]
        except Exception:  # queue.Empty
            return None

    def result(self) -> SubmitResult:
        try:
            return self.queue.get(timeout=self.timeout_s + 60)  # type: ignore[no-any-return]
        finally:
            self.stop()

    def stop(self) -> None:
        self.proc.join(timeout=10)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()
