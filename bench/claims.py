"""Claim cost against history: the old single-query claim vs the indexed one (issue 9).

What is measured
    A SQLite database (temp file, the store's defaults: WAL, synchronous=NORMAL), migrated
    to HEAD, holding N finished executions (bulk-inserted, all older than the queue) and a
    few queued ones. On one ``sqlite3`` connection, each claim is the store's transaction
    (BEGIN IMMEDIATE, read the candidates' old status, take them) and then ROLLBACK, so every
    repetition sees the same queue:

    * old          - the baseline, measured in the same run on the same rows: the claim
                     before migration 0005 (``status = 'queued' OR (status = 'running' AND
                     lease_expires_at < :now)`` ORDER BY created_at LIMIT 1) with the indexes
                     before 0005 (which it could not use: it walks ``ix_executions_created``);
    * old sql, new indexes - the old statement once 0005's indexes exist (for reference:
                     SQLite then serves each OR branch by its partial index);
    * new          - ``omium.store.lease_sql``'s claim with limit 1 (two index probes);
    * new batch 8  - the same statement taking 8 in one transaction;
    * idle old/new - old and new with an empty queue (every idle worker poll).

    Wall-clock per claim (``time.perf_counter``), median and p99 (nearest rank) over the
    repetitions; the plan of each is printed. The figures are noisy on a shared machine:
    compare the columns of one run, not runs.

How to run (from the repository root; ~1-2 min with the defaults, mostly the 300k insert)
    python -m bench.claims
    python -m bench.claims --sizes 3000 30000 --reps 50

The last line printed is a one-line JSON summary.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench._common import percentile, sqlite_insert_executions
from omium.store import lease_sql, open_store

_OLD_CLAIMABLE = ("(status = 'queued' OR (status = 'running' AND lease_expires_at IS NOT NULL "
                  "AND lease_expires_at < :now)) AND (:suspects = 1 OR NOT EXISTS "
                  "(SELECT 1 FROM executions s WHERE ((s.status = 'running' AND "
                  "s.lease_expires_at IS NOT NULL AND s.lease_expires_at < :now) OR "
                  "(s.status = 'queued' AND s.recoveries > 0))))")
_OLD_NEXT = f"SELECT id FROM executions WHERE {_OLD_CLAIMABLE} ORDER BY created_at LIMIT 1"
_OLD = [f"SELECT status AS old_status FROM executions WHERE id = ({_OLD_NEXT})",
        "UPDATE executions SET status = 'running', lease_owner = :w, lease_expires_at = :exp, "
        "lease_epoch = lease_epoch + 1, recoveries = recoveries + CASE WHEN status = 'running' "
        f"THEN 1 ELSE 0 END, updated_at = :now WHERE id = ({_OLD_NEXT}) RETURNING *"]
_COLUMNS = ("id", "workflow_name", "definition", "inputs", "status", "created_at",
            "updated_at", "finished_at")
QUEUED = 20
_NEW_INDEXES = ("idx_executions_queued", "idx_executions_leases", "idx_executions_requeued")
_OLD_INDEXES = ("CREATE INDEX idx_executions_claim ON executions (status, created_at) "
                "WHERE status IN ('queued', 'running')",
                "CREATE INDEX idx_executions_tenant_status ON executions (tenant_id, status) "
                "WHERE status != 'completed'")


def _fill(path: Path, finished: int) -> None:
    asyncio.run(_migrate(f"sqlite:///{path}"))
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        rows = [(f"h{i:07d}", "wf", "{}", "{}", "completed", float(i), float(i), float(i))
                for i in range(finished)]
        sqlite_insert_executions(conn, _COLUMNS, rows)
        queued = [(f"q{i:03d}", "wf", "{}", "{}", "queued", float(finished + i),
                   float(finished + i), None) for i in range(QUEUED)]
        sqlite_insert_executions(conn, _COLUMNS, queued)
    finally:
        conn.close()


async def _migrate(url: str) -> None:
    store = open_store(url)
    await store.connect()
    await store.close()


def _time(conn: sqlite3.Connection, statements: Sequence[str], params: dict[str, Any],
          reps: int, expect: int) -> list[float]:
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        rows = [conn.execute(sql, params).fetchall() for sql in statements]
        out.append(time.perf_counter() - t0)
        conn.execute("ROLLBACK")  # the same queue for the next repetition
        assert len(rows[-1]) == expect, (len(rows[-1]), expect)
    return out


def _plan(conn: sqlite3.Connection, sql: str, params: dict[str, Any]) -> str:
    return "; ".join(r[3] for r in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params)
                     if r[3].startswith(("SCAN", "SEARCH")))


def measure(finished: int, reps: int, tmp: Path) -> dict[str, Any]:
    path = tmp / f"claims-{finished}.db"
    _fill(path, finished)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    now = time.time()

    def params(n: int) -> dict[str, Any]:
        return {"w": "bench", "exp": now + 30, "now": now, "n": n, "suspects": 1}

    new = [s for s, _ in lease_sql._claim_statements("sqlite", params(1))]
    old_reps = max(5, min(reps, int(reps * 3000 / max(finished, 1)) + 5))
    marks = ", ".join("?" * len(_NEW_INDEXES))
    new_ddl = [r[0] for r in conn.execute(
        f"SELECT sql FROM sqlite_master WHERE name IN ({marks})", _NEW_INDEXES)]

    def old_schema() -> None:  # the indexes before migration 0005
        for name in _NEW_INDEXES:
            conn.execute(f"DROP INDEX {name}")
        for ddl in _OLD_INDEXES:
            conn.execute(ddl)

    def new_schema() -> None:
        conn.execute("DROP INDEX idx_executions_claim")
        conn.execute("DROP INDEX idx_executions_tenant_status")
        for ddl in new_ddl:
            conn.execute(ddl)

    figures: dict[str, list[float]] = {}
    old_schema()
    plans = {"old": _plan(conn, _OLD_NEXT, params(1))}
    figures["old"] = _time(conn, _OLD, params(1), old_reps, 1)
    new_schema()
    plans["new"] = _plan(conn, new[0], params(1))
    figures["new"] = _time(conn, new, params(1), reps, 1)
    figures["new batch 8"] = _time(conn, new, params(8), reps, 8)
    figures["old sql, new indexes"] = _time(conn, _OLD, params(1), reps, 1)
    conn.execute("UPDATE executions SET status = 'cancelled' WHERE status = 'queued'")
    figures["idle new"] = _time(conn, new, params(1), reps, 0)
    old_schema()
    figures["idle old"] = _time(conn, _OLD, params(1), old_reps, 0)
    conn.close()
    path.unlink()
    ms = {k: {"p50_ms": round(percentile(v, 50) * 1e3, 4),
              "p99_ms": round(percentile(v, 99) * 1e3, 4), "n": len(v)}
          for k, v in figures.items()}
    ratio = ms["old"]["p50_ms"] / ms["new"]["p50_ms"]
    idle_ratio = ms["idle old"]["p50_ms"] / ms["idle new"]["p50_ms"]
    return {"finished": finished, "queued": QUEUED, "ms": ms, "old_over_new": round(ratio, 1),
            "idle_old_over_new": round(idle_ratio, 1), "plans": plans}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[3000, 30000, 300000],
                        help="finished executions in the history (default 3000 30000 300000)")
    parser.add_argument("--reps", type=int, default=200,
                        help="timed claims per mode (the old claim: fewer on big histories)")
    args = parser.parse_args(argv)
    if max(args.sizes) > 2_000_000 or args.reps > 100_000:
        parser.error("bounded: at most 2,000,000 executions and 100,000 repetitions")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            r = measure(size, args.reps, Path(tmp))
            results.append(r)
            print(f"history {size:>8,}: " + "  ".join(
                f"{k} {v['p50_ms']:.3f} ms (p99 {v['p99_ms']:.3f}, n={v['n']})"
                for k, v in r["ms"].items()))
            print(f"    old/new x{r['old_over_new']}  idle old/new x{r['idle_old_over_new']}")
            print(f"    plan old: {r['plans']['old']}")
            print(f"    plan new: {r['plans']['new']}")
    print(json.dumps({"bench": "claims", "backend": "sqlite", "results": [
        {k: v for k, v in r.items() if k != "plans"} for r in results]}))


if __name__ == "__main__":
    main()
