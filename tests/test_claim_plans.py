"""Claims cost O(log n) however many executions have ever run: every hot-path statement of
the ``LeaseStore`` (claim, batch claim, reclaim and suspect probes, renew, release, queue
depth, live workers) uses an index, on SQLite and PostgreSQL; and the batch claim and the
batch renewal behave like their one-at-a-time forms, on both backends."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from omium.store import lease_sql as sql
from omium.store import open_store
from omium.store._postgres import compile_sql
from omium.store.base import Store
from tests._store_util import execution

_PARAMS: dict[str, Any] = {"w": "w", "exp": 2.0, "now": 1.0, "n": 8, "suspects": 1,
                           "ts": 1.0, "e": "x", "epoch": 1, "t": 0.0}
_QUEUE = "idx_executions_queued"
_LEASES = "idx_executions_leases"
_REQUEUED = "idx_executions_requeued"
_PKEY = {"sqlite": "sqlite_autoindex_executions_1", "postgresql": "executions_pkey"}
_CLAIM_INDEXES = {_QUEUE, _LEASES, _REQUEUED}


def _statements(dialect: str) -> dict[str, tuple[str, dict[str, Any], set[str]]]:
    """Each hot-path statement with its parameters and the indexes its plan must use."""
    claim = sql._claim_statements(dialect, _PARAMS)
    renew, renew_params = sql._renew_statement([("a", 1), ("b", 2), ("c", 3)], 30)
    out = {
        "claim": (claim[-1][0], _PARAMS, _CLAIM_INDEXES | ({_PKEY[dialect]}
                                                           if dialect == "sqlite" else set())),
        "reclaim probe": (f"SELECT id FROM executions WHERE {sql._EXPIRED} "
                          "ORDER BY created_at LIMIT :n", _PARAMS, {_LEASES}),
        "suspect probe": (f"SELECT {sql._SUSPECT_WAITS} AS waits", _PARAMS,
                          {_LEASES, _REQUEUED}),
        # PostgreSQL may read the few running rows by the lease index instead of k primary
        # key lookups when that is cheaper: bounded by the running set either way.
        "renew": (renew, renew_params, {_PKEY[dialect]} if dialect == "sqlite" else set()),
        "release": (sql._RELEASE, _PARAMS, {_PKEY[dialect]}),
        "queue depth": (sql._QUEUE_DEPTH, _PARAMS, {_QUEUE}),
        "live workers": (sql._LIVE_WORKERS, _PARAMS, {"idx_workers_live"}),
    }
    if dialect == "sqlite":  # the claim's first statement reads the candidates' old status
        out["claim candidates"] = (claim[0][0], _PARAMS, _CLAIM_INDEXES)
    return out


async def _migrate(url: str) -> None:
    store = open_store(url)
    await store.connect()
    await store.close()


def test_sqlite_hot_paths_search_their_indexes(tmp_path: Path) -> None:
    asyncio.run(_migrate(f"sqlite:///{tmp_path}/plans.db"))
    conn = sqlite3.connect(tmp_path / "plans.db")
    try:
        for name, (text, params, indexes) in _statements("sqlite").items():
            plan = [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {text}", params)]
            # Only subqueries' results (a few rows each) are scanned; no table, no index.
            scans = [line for line in plan if line.startswith("SCAN")
                     and not line.startswith(("SCAN (subquery", "SCAN CONSTANT ROW"))]
            assert not scans, f"{name}: {scans}\n" + "\n".join(plan)
            used = {line.split(" INDEX ")[1].split()[0] for line in plan
                    if line.startswith("SEARCH") and " INDEX " in line}
            assert indexes <= used, f"{name} uses {used}, not {indexes}\n" + "\n".join(plan)
    finally:
        conn.close()


async def test_postgres_hot_paths_scan_their_indexes(postgres_url: str) -> None:
    await _migrate(postgres_url)
    conn = await asyncpg.connect(postgres_url)
    try:
        # A history of finished executions and a few live ones, with statistics, so the
        # planner weighs the indexes as in production; a small table is still cheapest to
        # read whole, so sequential scans are priced out to show the index plan.
        await conn.execute(
            "INSERT INTO executions (id, workflow_name, definition, inputs, status, "
            "created_at, updated_at, lease_expires_at) SELECT 'h' || g, 'wf', '{}', '{}', "
            "CASE WHEN g % 500 = 0 THEN 'queued' WHEN g % 500 = 1 THEN 'running' "
            "WHEN g % 10 = 2 THEN 'failed' WHEN g % 50 = 3 THEN 'cancelled' "
            "ELSE 'completed' END, g, g, CASE WHEN g % 500 = 1 THEN g END "
            "FROM generate_series(1, 5000) g")
        await conn.execute("VACUUM ANALYZE executions")  # as autovacuum would
        await conn.execute("SET enable_seqscan = off")
        for name, (text, params, indexes) in _statements("postgresql").items():
            pg_text, names = compile_sql(f"EXPLAIN {text}")
            plan = "\n".join(r[0] for r in await conn.fetch(pg_text,
                                                            *[params[n] for n in names]))
            assert "Seq Scan" not in plan, f"{name}:\n{plan}"
            if name == "renew":
                assert f"{_PKEY['postgresql']} on" in plan or f"{_LEASES} on" in plan, plan
            for index in indexes:
                assert any(f"{kind} {index}" in plan for kind in (
                    "Index Scan using", "Index Only Scan using", "Bitmap Index Scan on")), (
                    f"{name} does not use {index}:\n{plan}")
    finally:
        await conn.close()


# -- behaviour, on both backends
async def _queue(store: Store, *ids: str) -> None:
    for execution_id in ids:
        await store.create_execution(execution(execution_id))
        await asyncio.sleep(0.002)  # distinct created_at: oldest first is well defined


async def test_batch_claims_take_the_oldest_once_each(store: Store) -> None:
    await _queue(store, *(f"q{i}" for i in range(5)))
    first = await store.claim_executions("w", 10, 3)
    assert [(r.id, r.status, r.lease_owner, r.lease_epoch, again) for r, again in first] == [
        (f"q{i}", "running", "w", 1, False) for i in range(3)]
    assert [r.id for r, _ in await store.claim_executions("w2", 10, 3)] == ["q3", "q4"]
    assert await store.claim_executions("w", 10, 3) == []
    assert await store.queue_depth() == 0


async def test_concurrent_batch_claimers_never_share_an_execution(store: Store) -> None:
    ids = {f"c{i}" for i in range(40)}
    for execution_id in sorted(ids):
        await store.create_execution(execution(execution_id))
    seen: list[str] = []
    for _ in range(20):  # SKIP LOCKED: a claimer may find the rest locked; claim again
        got = await asyncio.gather(*(store.claim_executions(f"w{i}", 10, 4)
                                     for i in range(6)))
        seen += [r.id for claims in got for r, _ in claims]
        if len(seen) >= len(ids):
            break
    assert sorted(seen) == sorted(ids)  # each exactly once


async def test_batch_reclaims_count_and_suspects_run_alone(store: Store) -> None:
    await _queue(store, "a", "b")
    lost = await store.claim_executions("dead", 0.01, 5)
    assert [r.id for r, _ in lost] == ["a", "b"]
    await asyncio.sleep(0.03)  # the claimer "died": both leases ran out
    await _queue(store, "z")
    # Busy: nothing while suspects wait. Idle: one at a time, oldest first, reclaimed.
    assert await store.claim_executions("w", 30, 5, suspects=False) == []
    [(rec, reclaimed)] = await store.claim_executions("w", 30, 5)
    assert (rec.id, reclaimed, rec.lease_epoch, rec.recoveries, rec.lease_owner) == (
        "a", True, 2, 1, "w")
    [(rec, reclaimed)] = await store.claim_executions("w2", 30, 5)
    assert (rec.id, reclaimed, rec.lease_epoch, rec.recoveries) == ("b", True, 2, 1)
    # No suspect waits any more: a busy worker takes the innocent one.
    [(rec, reclaimed)] = await store.claim_executions("w3", 30, 5, suspects=False)
    assert (rec.id, reclaimed, rec.recoveries) == ("z", False, 0)
    # Released after a reclaim, "a" is still a suspect (recoveries > 0): it runs alone.
    assert await store.release_lease("a", 2)
    await _queue(store, "y")
    assert await store.claim_executions("w3", 30, 5, suspects=False) == []
    assert [(r.id, r.lease_epoch, again) for r, again in
            await store.claim_executions("w", 30, 5)] == [("a", 4, False)]
    assert [r.id for r, _ in await store.claim_executions("w", 30, 5)] == ["y"]


async def test_one_renewal_for_all_leases_refuses_moved_epochs(store: Store) -> None:
    await _queue(store, "a", "b", "c")
    epochs = {r.id: r.lease_epoch for r, _ in await store.claim_executions("w", 10, 3)}
    assert await store.release_lease("b", epochs["b"])  # its epoch moves on
    assert await store.request_cancel("c", "local") == "cancelling"
    before = await store.get_execution("a")
    held = [(i, epochs[i]) for i in ("a", "b", "c")] + [("gone", 1)]
    assert await store.renew_leases(held, 60) == {
        "a": (True, False), "b": (False, False), "c": (True, True), "gone": (False, False)}
    after = await store.get_execution("a")
    assert before is not None and after is not None
    assert after.lease_expires_at > before.lease_expires_at  # type: ignore[operator]
    b = await store.get_execution("b")
    assert b is not None and (b.status, b.lease_expires_at) == ("queued", None)
    assert await store.renew_leases([], 60) == {}
    assert await store.renew_lease("c", epochs["c"], 60) == (True, True)


@pytest.mark.parametrize("limit", [0, -1])
async def test_a_batch_of_nothing_claims_nothing(sqlite_store: Store, limit: int) -> None:
    await _queue(sqlite_store, "q")
    assert await sqlite_store.claim_executions("w", 10, limit) == []
    assert await sqlite_store.queue_depth() == 1
