"""Helpers for ``bench/router.py``: fake-server processes, CPU pinning, statistics, tables."""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Sequence

from bench._common import percentile

# -- the fake OpenAI server as a separate process -------------------------------------------


class ServerProcess:
    """``python -m omium.testing.fake_server --port 0`` in its own process (own event loop)."""

    def __init__(self, name: str, *, model: str = "fake-model", cpu: int | None = None) -> None:
        self.name, self.model, self.cpu = name, model, cpu
        self.proc: subprocess.Popen[str] | None = None
        self.base_url = ""

    def spawn(self) -> None:
        cpu = self.cpu
        pin = None if cpu is None else (lambda: os.sched_setaffinity(0, {cpu}))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "omium.testing.fake_server", "--port", "0",
             "--model", self.model],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True, preexec_fn=pin)

    def wait_ready(self, timeout_s: float = 30.0) -> str:
        """Block until the server prints ``ready URL``; returns the base URL (``.../v1``)."""
        assert self.proc is not None and self.proc.stdout is not None
        deadline = time.monotonic() + timeout_s
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            while time.monotonic() < deadline:
                if not sel.select(max(0.0, deadline - time.monotonic())):
                    break
                line = self.proc.stdout.readline()
                if not line:
                    raise RuntimeError(f"{self.name} server exited ({self.proc.poll()})")
                if line.startswith("ready "):
                    self.base_url = line.split()[1]
                    return self.base_url
        raise RuntimeError(f"{self.name} server not ready after {timeout_s:.0f}s")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def kill(self) -> None:
        """SIGKILL and reap: the process and its sockets are gone when this returns."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def start_servers(servers: Sequence[ServerProcess]) -> None:
    """Spawn all first (their imports overlap), then wait for each to be ready."""
    for s in servers:
        s.spawn()
    for s in servers:
        s.wait_ready()


# -- CPU pinning ----------------------------------------------------------------------------

def pin_self(cpu: int) -> bool:
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setaffinity(0, {cpu})
        return True
    return False


# -- statistics and output ------------------------------------------------------------------


def ms_summary(ns: Sequence[int]) -> dict[str, float]:
    ms = [t / 1e6 for t in ns]
    return {"p50_ms": percentile(ms, 50), "p90_ms": percentile(ms, 90),
            "p99_ms": percentile(ms, 99), "mean_ms": sum(ms) / len(ms), "min_ms": min(ms),
            "n": len(ms)}


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    def cell(v: object) -> str:
        if isinstance(v, float):
            return f"{v:,.3f}" if abs(v) < 100 else f"{v:,.0f}"
        return str(v)

    cells = [[cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) if i == 0 else h.rjust(w)
                       for i, (h, w) in enumerate(zip(headers, widths, strict=True)))]
    lines.append("  ".join("-" * w for w in widths))
    for r in cells:
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                               for i, (c, w) in enumerate(zip(r, widths, strict=True))))
    return "\n".join(lines)
