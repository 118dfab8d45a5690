"""Helpers for ``bench/api_load.py``: throwaway databases, the ``omium serve`` process,
bulk execution rows, latency statistics and CPU accounting (Linux ``/proc``).

Nothing here imports the server's code: the benchmark talks to the service as a client would
(HTTP, and the ``omium`` CLI in subprocesses), plus direct SQL to bulk-load list data.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import AsyncIterator
from typing import Any

from bench._common import (
    ROOT,
    FreshPgDatabase,
    percentile,
    postmaster_pid,
    sqlite_insert_executions,
)
from bench._machine import _stat, tree_cpu_s
from bench.agents import SCHEMA_2020_12, noop_chain

# The columns the bulk loader writes; the rest take their server defaults.
EXEC_COLUMNS = ("id", "workflow_id", "workflow_name", "definition", "inputs", "status",
                "tenant_id", "decision", "result", "created_at", "updated_at", "finished_at")

# The first agent's input schema: every submission's inputs are validated against it.
SUBMIT_SCHEMA: dict[str, Any] = {
    "$schema": SCHEMA_2020_12,
    "type": "object",
    "required": ["applicant_id", "step"],
    "properties": {
        "applicant_id": {"type": "string", "minLength": 1, "maxLength": 64},
        "step": {"type": "integer", "minimum": 0},
    },
    "additionalProperties": False,
}


def workflow_definition(agent: str = "sync") -> dict[str, Any]:
    """Three no-op Python agents in sequence (``bench.agents:noop``, resolved from the
    server's working directory: the repository root; ``agent="async"``: ``anoop``), an input
    schema on the first."""
    agents = noop_chain(3, callable_ref="bench.agents:anoop" if agent == "async"
                        else "bench.agents:noop")
    agents[0]["input_schema"] = SUBMIT_SCHEMA
    return {"name": "api_load_noop3", "execution_order": "sequential", "agents": agents}


# -- statistics -----------------------------------------------------------------------------

def latency_summary(latencies_s: list[float]) -> dict[str, float]:
    ms = sorted(x * 1000 for x in latencies_s)
    if not ms:
        return {"p50_ms": float("nan"), "p95_ms": float("nan"), "p99_ms": float("nan"),
                "max_ms": float("nan"), "mean_ms": float("nan")}
    return {"p50_ms": percentile(ms, 50), "p95_ms": percentile(ms, 95),
            "p99_ms": percentile(ms, 99), "max_ms": ms[-1], "mean_ms": sum(ms) / len(ms)}


# -- databases ------------------------------------------------------------------------------

_COMPLETED = "SELECT COUNT(*) FROM executions WHERE tenant_id = $1 AND status = 'completed'"


class Database:
    """A throwaway database the server runs on; the benchmark's own direct access to it."""

    name = ""
    url = ""
    server_pid: int | None = None  # PostgreSQL's postmaster, when it runs on this machine

    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def insert_executions(self, rows: list[tuple[Any, ...]]) -> None: ...
    async def count(self, tenant_id: str | None = None) -> int: ...
    async def completed(self, tenant_id: str) -> int: ...


class SqliteDatabase(Database):
    """A file in a temporary folder, deleted by ``close``. The server migrates it."""

    name = "sqlite"

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="omium-apibench-")
        self.path = os.path.join(self.dir, "omium.db")
        self.url = f"sqlite:///{self.path}"

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, isolation_level=None, timeout=60.0)

    async def insert_executions(self, rows: list[tuple[Any, ...]]) -> None:
        conn = self._connect()
        try:
            sqlite_insert_executions(conn, EXEC_COLUMNS, rows)
        finally:
            conn.close()

    async def count(self, tenant_id: str | None = None) -> int:
        conn = self._connect()
        try:
            if tenant_id is None:
                return int(conn.execute("SELECT COUNT(*) FROM executions").fetchone()[0])
            return int(conn.execute("SELECT COUNT(*) FROM executions WHERE tenant_id = ?",
                                    (tenant_id,)).fetchone()[0])
        finally:
            conn.close()

    async def completed(self, tenant_id: str) -> int:
        conn = self._connect()
        try:
            return int(conn.execute(_COMPLETED.replace("$1", "?"), (tenant_id,)).fetchone()[0])
        finally:
            conn.close()

    async def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)  # the database, its WAL, its key file


class PgDatabase(Database):
    """A fresh database on the server at ``server_url``, dropped (WITH FORCE) by ``close``."""

    name = "postgres"

    def __init__(self, server_url: str) -> None:
        self.fresh = FreshPgDatabase(server_url, "omium_apibench_")
        self.url = self.fresh.url

    @contextlib.asynccontextmanager
    async def _connect(self) -> AsyncIterator[Any]:
        import asyncpg

        conn = await asyncpg.connect(self.url)
        try:
            yield conn
        finally:
            await conn.close()

    async def open(self) -> None:
        await self.fresh.create()
        async with self._connect() as conn:
            self.server_pid = await postmaster_pid(conn)

    async def insert_executions(self, rows: list[tuple[Any, ...]]) -> None:
        async with self._connect() as conn:
            await conn.copy_records_to_table("executions", records=rows, columns=EXEC_COLUMNS)

    async def analyze(self) -> None:
        async with self._connect() as conn:
            await conn.execute("ANALYZE executions")

    async def count(self, tenant_id: str | None = None) -> int:
        async with self._connect() as conn:
            if tenant_id is None:
                return int(await conn.fetchval("SELECT COUNT(*) FROM executions"))
            return int(await conn.fetchval(
                "SELECT COUNT(*) FROM executions WHERE tenant_id = $1", tenant_id))

    async def completed(self, tenant_id: str) -> int:
        async with self._connect() as conn:
            return int(await conn.fetchval(_COMPLETED, tenant_id))

    async def close(self) -> None:
        await self.fresh.drop()


def spread(items: list[int], k: int) -> list[int]:
    """``k`` of ``items``, evenly spaced (all of them when k >= len(items))."""
    if k <= 0:
        return []
    if k >= len(items):
        return list(items)
    step = len(items) / k
    return [items[int(i * step)] for i in range(k)]


def execution_rows(slots: list[int], queued: set[int], *, tenant_id: str, workflow_id: str,
                   name: str, definition: dict[str, Any], base_ts: float
                   ) -> list[tuple[Any, ...]]:
    """One execution per time slot, in EXEC_COLUMNS order: id ``lb-<slot>``, ``created_at``
    = ``base_ts`` + slot ms; the slots in ``queued`` are queued, the rest completed with a
    small result (as a worker would leave them)."""
    defn = json.dumps(definition, separators=(",", ":"))
    rows = []
    for slot in slots:
        ts = base_ts + slot * 1e-3
        inputs = json.dumps({"applicant_id": f"LB-{slot:07d}", "step": 0})
        if slot in queued:
            rows.append((f"lb-{slot:07d}", workflow_id, name, defn, inputs, "queued", tenant_id,
                         None, None, ts, ts, None))
        else:
            result = json.dumps({"applicant_id": f"LB-{slot:07d}", "step": 3})
            rows.append((f"lb-{slot:07d}", workflow_id, name, defn, inputs, "completed",
                         tenant_id, None, result, ts, ts + 0.05, ts + 0.05))
    return rows


# -- the omium CLI and server ---------------------------------------------------------------

def server_env() -> dict[str, str]:
    """This environment without OMIUM_* variables, the repository root first on PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMIUM_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    env["OMIUM_ALLOWED_MODULES"] = "bench"  # the benchmark's own agents, named over the API
    return env


def _cli(*args: str, cwd: str) -> subprocess.CompletedProcess[str]:
    env = server_env()
    return subprocess.run([sys.executable, "-m", "omium.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def create_tenant(url: str, name: str, cwd: str) -> tuple[str, str]:
    """``omium tenants create NAME --db URL --json``: (tenant id, API key)."""
    done = _cli("tenants", "create", name, "--db", url, "--json", cwd=cwd)
    if done.returncode != 0:
        raise RuntimeError(f"omium tenants create failed ({done.returncode}): "
                           f"{done.stderr.strip()[-2000:]}")
    data = json.loads(done.stdout.strip().splitlines()[-1])
    return str(data["tenant_id"]), str(data["api_key"])


class Server:
    """``omium serve --no-workers --processes P --port X --db URL`` in its own session, its
    stderr to a temporary file; ``stop`` sends SIGTERM (uvicorn's graceful shutdown).

    It runs in a temporary working directory (``serve`` writes a ``.omium-local-key`` file
    there for a PostgreSQL URL) with the repository root on ``PYTHONPATH`` so that
    ``bench.agents`` imports."""

    def __init__(self, url: str, *, processes: int, port: int, workers: bool = False,
                 extra_args: tuple[str, ...] = ()) -> None:
        self.url, self.processes, self.port = url, processes, port
        self.workers = workers  # True: a default omium serve, in-process workers and all
        self.extra_args = extra_args  # more omium serve options
        self.cwd = tempfile.mkdtemp(prefix="omium-apibench-cwd-")
        self.base = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log: Any = None

    def start(self, timeout_s: float = 60.0) -> None:
        env = server_env()
        self.log = tempfile.TemporaryFile(prefix="omium-apibench-serve-")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "omium.cli", "serve",
             *(() if self.workers else ("--no-workers",)), "--host", "127.0.0.1",
             "--processes", str(self.processes), "--port", str(self.port), "--db", self.url,
             *self.extra_args],
            cwd=self.cwd, env=env, stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log,
            start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"omium serve exited ({self.proc.returncode}):\n"
                                   f"{self.output()}")
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(self.base + "/health", timeout=2) as r:
                    if r.status == 200:
                        self._wait_all_processes(deadline)
                        return
            time.sleep(0.2)
        raise RuntimeError(f"omium serve did not answer /health in {timeout_s:g}s:\n"
                           f"{self.output()}")

    def _wait_all_processes(self, deadline: float) -> None:
        """/health answers once one process is up; wait until all P have opened the store
        (each uvicorn worker process is a descendant of the supervisor)."""
        if self.processes <= 1 or self.proc is None:
            return
        while time.monotonic() < deadline:
            if len(self.worker_pids()) >= self.processes:
                time.sleep(1.0)  # lifespan (store connect) finishes after the fork
                return
            time.sleep(0.2)

    def worker_pids(self) -> list[int]:
        if self.proc is None:
            return []
        out = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                with contextlib.suppress(OSError, ValueError, IndexError):
                    if int(_stat(entry)[1]) == self.proc.pid:
                        with open(f"/proc/{entry}/cmdline", "rb") as f:
                            if b"spawn_main" in f.read():  # not the resource tracker
                                out.append(int(entry))
        return out

    def cpu_s(self) -> float | None:
        return None if self.proc is None else tree_cpu_s(self.proc.pid)

    def output(self) -> str:
        if self.log is None:
            return ""
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-4000:]

    def stop(self, timeout_s: float = 20.0) -> int | None:
        if self.proc is None:
            shutil.rmtree(self.cwd, ignore_errors=True)
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)  # its own session: only ours
                self.proc.wait()
        # Worker processes left behind by a supervisor that died first: same session.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        if self.log is not None:
            self.log.close()
            self.log = None
        shutil.rmtree(self.cwd, ignore_errors=True)
        return self.proc.returncode


async def api_call(session: Any, method: str, path: str, key: str, body: Any = None,
                   expect: int = 200) -> Any:
    """One authenticated JSON request; anything but ``expect`` is an error naming the call."""
    async with session.request(method, path, json=body,
                               headers={"Authorization": f"Bearer {key}"}) as r:
        text = await r.text()
        if r.status != expect:
            raise RuntimeError(f"{method} {path} -> {r.status} (expected {expect}): "
                               f"{text[:500]}")
        return json.loads(text)
