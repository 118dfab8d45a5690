"""Helpers for ``bench/workers.py``: databases to queue work in, worker processes, CPU use.

A ``Backend`` is the benchmark's own view of one database (bulk inserts, progress counts,
the end-of-run audit), independent of the store the workers use; ``WorkerProcs`` starts and
stops ``python -m omium.cli worker`` processes.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

from bench._common import ROOT, FreshPgDatabase, postmaster_pid, sqlite_insert_executions
from bench._machine import process_cpu_s, tree_cpu_s

# The columns ``SqlStore.create_execution`` writes; the rest take their server defaults.
EXEC_COLUMNS = ("id", "workflow_id", "workflow_name", "definition", "inputs", "status",
                "tenant_id", "created_at", "updated_at")

# Per-run tables (children first, for SQLite, which has no TRUNCATE ... CASCADE).
RUN_TABLES = ("events", "handoffs", "checkpoints", "consensus_results", "usage_records",
              "executions", "workers")

_PROGRESS = ("SELECT SUM(CASE WHEN status = 'completed' THEN 1 ELSE 0 END) AS done, "
             "SUM(CASE WHEN status <> 'queued' THEN 1 ELSE 0 END) AS taken FROM executions")


def _dump(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


def execution_rows(n: int, workflow_id: str, name: str, definition: dict[str, Any],
                   inputs: Any) -> list[tuple[Any, ...]]:
    """N queued executions in EXEC_COLUMNS order, ``created_at`` strictly increasing (claim
    order = id order)."""
    now = time.time()
    defn, ins = _dump(definition), _dump(inputs)
    return [(f"wb-{i:06d}", workflow_id, name, defn, ins, "queued", "local",
             now + i * 1e-6, now + i * 1e-6) for i in range(n)]


@dataclass
class Audit:
    """What the database says after a run: was every execution completed exactly once?"""

    executions: int = 0
    completed: int = 0
    checkpoints: int = 0  # all rows, superseded included
    wrong_checkpoint_count: int = 0  # executions without exactly ``agents`` live checkpoints
    epoch_not_1: int = 0
    claims: int = 0  # "claimed" events
    reclaims: int = 0  # claims of an execution whose lease had expired
    with_result: int = 0
    by_worker: dict[str, int] = field(default_factory=dict)  # first claim's worker -> count
    first_claim_ts: float | None = None  # wall clock (time.time) of the first claim
    finished_ts: list[float] = field(default_factory=list)  # completed ones, sorted

    def problems(self, n: int, agents: int) -> list[str]:
        out = []
        if self.executions != n:
            out.append(f"{self.executions} executions in the table, expected {n}")
        if self.completed != n:
            out.append(f"{n - self.completed} not completed")
        if self.with_result != self.completed:
            out.append(f"{self.completed - self.with_result} completed without a result")
        if self.checkpoints != n * agents:
            out.append(f"{self.checkpoints} checkpoint rows, expected {n * agents} "
                       "(an agent ran more than once, or not at all)")
        if self.wrong_checkpoint_count:
            out.append(f"{self.wrong_checkpoint_count} executions without exactly {agents} "
                       "live checkpoints")
        if self.epoch_not_1 != self.reclaims:
            out.append(f"{self.epoch_not_1} executions with lease_epoch != 1 but "
                       f"{self.reclaims} reclaims")
        if self.claims != n + self.reclaims:
            out.append(f"{self.claims} claims for {n} executions and {self.reclaims} reclaims")
        return out


def _audit_queries(agents: int) -> list[str]:
    return [
        "SELECT COUNT(*) FROM executions",
        "SELECT COUNT(*) FROM executions WHERE status = 'completed'",
        "SELECT COUNT(*) FROM executions WHERE status = 'completed' AND result IS NOT NULL",
        "SELECT COUNT(*) FROM checkpoints",
        "SELECT COUNT(*) FROM executions e WHERE (SELECT COUNT(*) FROM checkpoints c WHERE "
        f"c.execution_id = e.id AND c.superseded = 0) <> {agents}",
        "SELECT COUNT(*) FROM executions WHERE lease_epoch <> 1",
    ]


_FINISHED = ("SELECT finished_at FROM executions WHERE status = 'completed' "
             "ORDER BY finished_at")


def _fill_audit(audit: Audit, counts: list[int], claims: list[tuple[float, str]],
                finished: list[float]) -> Audit:
    (audit.executions, audit.completed, audit.with_result, audit.checkpoints,
     audit.wrong_checkpoint_count, audit.epoch_not_1) = counts
    audit.claims = len(claims)
    audit.first_claim_ts = min((ts for ts, _ in claims), default=None)
    audit.finished_ts = [float(f) for f in finished]
    for _, text in claims:
        data = json.loads(text)
        if data.get("reclaimed"):
            audit.reclaims += 1
        else:
            worker = str(data.get("worker"))
            audit.by_worker[worker] = audit.by_worker.get(worker, 0) + 1
    return audit


class Backend:
    """One database the benchmark queues executions in and watches (base: the interface)."""

    name = ""
    url = ""

    def server_cpu_s(self) -> float | None:
        """CPU seconds the database server has used so far (None: not measurable)."""
        return None

    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def reset(self) -> None: ...
    async def insert(self, rows: list[tuple[Any, ...]]) -> None: ...
    async def progress(self) -> tuple[int, int]: ...  # (completed, no longer queued)
    async def audit(self, agents: int) -> Audit: ...


class PgBackend(Backend):
    """A fresh database on the server at ``server_url``, dropped by ``close``."""

    name = "postgres"

    def __init__(self, server_url: str) -> None:
        self.fresh = FreshPgDatabase(server_url, "omium_wbench_")
        self.url = self.fresh.url
        self.conn: Any = None
        self.postmaster: int | None = None  # when the server runs on this machine

    async def open(self) -> None:
        import asyncpg

        await self.fresh.create()
        self.conn = await asyncpg.connect(self.url)
        self.postmaster = await postmaster_pid(self.conn)

    def server_cpu_s(self) -> float | None:
        return None if self.postmaster is None else tree_cpu_s(self.postmaster)

    async def close(self) -> None:
        if self.conn is not None:
            await self.conn.close()
        await self.fresh.drop()

    async def reset(self) -> None:
        await self.conn.execute(f"TRUNCATE {', '.join(RUN_TABLES)} CASCADE")

    async def insert(self, rows: list[tuple[Any, ...]]) -> None:
        await self.conn.copy_records_to_table("executions", records=rows, columns=EXEC_COLUMNS)
        await self.conn.execute("ANALYZE executions")

    async def progress(self) -> tuple[int, int]:
        row = await self.conn.fetchrow(_PROGRESS)
        return int(row["done"] or 0), int(row["taken"] or 0)

    async def audit(self, agents: int) -> Audit:
        counts = [int(await self.conn.fetchval(q)) for q in _audit_queries(agents)]
        rows = await self.conn.fetch("SELECT ts, data FROM events WHERE type = 'claimed'")
        finished = [r[0] for r in await self.conn.fetch(_FINISHED)]
        return _fill_audit(Audit(), counts, [(r["ts"], r["data"]) for r in rows], finished)


class SqliteBackend(Backend):
    """A temporary database file (WAL), deleted by ``close``."""

    name = "sqlite"

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="omium-wbench-")
        self.path = os.path.join(self.dir, "omium.db")
        self.url = f"sqlite:///{self.path}"
        self.conn: sqlite3.Connection | None = None

    @property
    def db(self) -> sqlite3.Connection:
        if self.conn is None:  # after the store has migrated the file
            self.conn = sqlite3.connect(self.path, isolation_level=None, timeout=30.0)
        return self.conn

    async def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path + suffix)
        with contextlib.suppress(OSError):
            os.rmdir(self.dir)

    async def reset(self) -> None:
        for table in RUN_TABLES:
            self.db.execute(f"DELETE FROM {table}")

    async def insert(self, rows: list[tuple[Any, ...]]) -> None:
        sqlite_insert_executions(self.db, EXEC_COLUMNS, rows)
        self.db.execute("ANALYZE executions")

    async def progress(self) -> tuple[int, int]:
        done, taken = self.db.execute(_PROGRESS).fetchone()
        return int(done or 0), int(taken or 0)

    async def audit(self, agents: int) -> Audit:
        counts = [int(self.db.execute(q).fetchone()[0]) for q in _audit_queries(agents)]
        claims = self.db.execute("SELECT ts, data FROM events WHERE type = 'claimed'")
        finished = [r[0] for r in self.db.execute(_FINISHED)]
        return _fill_audit(Audit(), counts, list(claims), finished)


# -- worker processes -----------------------------------------------------------------------

_STOPPED = re.compile(r"worker stopped after (\d+) execution")
_STARTED = re.compile(r"worker (\S+) on ")


@dataclass
class WorkerResult:
    worker_id: str | None
    completed: int | None  # as the process reported on exit
    cpu_s: float | None  # user + system, read just before SIGTERM
    returncode: int | None
    stderr_tail: str


class WorkerProcs:
    """K ``python -m omium.cli worker`` processes on one database; stderr to temp files."""

    def __init__(self, url: str, k: int, *, concurrency: int, lease_s: float, poll_s: float,
                 grace_s: float) -> None:
        self.cmd = [sys.executable, "-m", "omium.cli", "worker", "--db", url,
                    "--concurrency", str(concurrency), "--lease", str(lease_s),
                    "--poll", str(poll_s), "--grace", str(grace_s)]
        self.k, self.grace_s = k, grace_s
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: list[Any] = []
        self.cpu: list[float | None] = []

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if k != "OMIUM_DATABASE_URL"}
        env["OMIUM_ALLOWED_MODULES"] = "bench"  # workers re-check the references they run
        for _ in range(self.k):
            log = tempfile.TemporaryFile(prefix="omium-wbench-worker-")
            self.logs.append(log)
            self.procs.append(subprocess.Popen(self.cmd, cwd=ROOT, env=env,
                                               stdin=subprocess.DEVNULL,
                                               stdout=subprocess.DEVNULL, stderr=log))

    def dead(self) -> list[int]:
        """Indexes of workers that exited (they should run until stopped)."""
        return [i for i, p in enumerate(self.procs) if p.poll() is not None]

    def sample_cpu(self) -> None:
        self.cpu = [process_cpu_s(p.pid) for p in self.procs]

    def stop(self) -> list[WorkerResult]:
        """SIGTERM all (graceful drain), wait, SIGKILL stragglers; what each one said."""
        if not self.cpu:
            self.sample_cpu()
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.grace_s + 15
        for p in self.procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        out = []
        for p, log, cpu in zip(self.procs, self.logs, self.cpu, strict=True):
            log.seek(0)
            text = log.read().decode(errors="replace")
            log.close()
            done, started = _STOPPED.search(text), _STARTED.search(text)
            out.append(WorkerResult(started.group(1) if started else None,
                                    int(done.group(1)) if done else None, cpu,
                                    p.returncode, text[-2000:]))
        return out

