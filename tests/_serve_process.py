"""A real ``omium serve`` on 127.0.0.1 for tests that need the HTTP server itself (sockets,
uvicorn settings, a fuzzer): started on a free port, ready when ``/health`` answers."""

from __future__ import annotations

import os
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from tests._processes import free_port, omium, wait_http

ADMIN = "admin-secret-for-serve-tests"
METRICS_TOKEN = "metrics-token-for-serve-tests"


@dataclass
class Served:
    base: str  # http://127.0.0.1:PORT
    port: int
    key: str  # tenant "local"'s API key, as `omium serve` made it
    process: subprocess.Popen


def start_serve(url: str, port: int, *args: str, **env: str) -> subprocess.Popen:
    """``omium serve --db URL --port PORT ARGS`` with ``env`` added (and the admin key,
    metrics token and the tests' agent modules allowed)."""
    full_env = {**os.environ, "OMIUM_ADMIN_KEY": ADMIN, "OMIUM_METRICS_TOKEN": METRICS_TOKEN,
                "OMIUM_ALLOWED_MODULES": "tests,examples", **env}
    return omium("serve", "--db", url, "--port", str(port), *args,
                 env=full_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop_serve(proc: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL if it has not exited within 20 s."""
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@asynccontextmanager
async def omium_serve(db: Path, *args: str, **env: str) -> AsyncIterator[Served]:
    """``omium serve`` (``start_serve``) on the SQLite file DB; stopped on exit."""
    port = free_port()
    proc = start_serve(f"sqlite:///{db}", port, *args, **env)
    try:
        base = f"http://127.0.0.1:{port}"
        await wait_http(f"{base}/health")
        key = (db.parent / ".omium-local-key").read_text().strip()
        yield Served(base, port, key, proc)
    finally:
        stop_serve(proc)
