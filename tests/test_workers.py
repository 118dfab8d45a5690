"""Workers with leases: claiming, heartbeats, reclaiming after a dead or paused worker,
fencing, cancellation and graceful shutdown."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from omium import open_store
from omium.engine.graph import prepare
from omium.engine.worker import Worker
from omium.store import ExecutionRecord
from omium.store.base import Store

ROOT = Path(__file__).resolve().parent.parent
AGENTS = [f"s{i}" for i in range(1, 5)]


def _definition(fn: str = "side_effect") -> dict:
    wf = prepare({"name": "fx", "agents": [
        {"id": a, "definition": {"callable": f"tests.agents_for_tests:{fn}"},
         "retry": {"max_attempts": 1}} for a in AGENTS]}).workflow
    return wf.model_dump(mode="json", exclude_none=True)


async def _submit(store: Store, n: int, definition: dict, prefix: str = "e") -> list[str]:
    ids = [f"{prefix}{i}" for i in range(n)]
    for i in ids:
        await store.create_execution(ExecutionRecord(i, "fx", definition, {"total": 0},
                                                     status="queued"))
    return ids


async def _wait_for(store: Store, ids: list[str], statuses: set[str], within: float) -> None:
    recs: list = []
    for _ in range(int(within / 0.05)):
        recs = [await store.get_execution(i) for i in ids]
        if all(r is not None and r.status in statuses for r in recs):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"not all {statuses}: {[(r.id, r.status) for r in recs if r]}")


async def _until(condition: Callable[[], bool], within: float = 20) -> None:
    for _ in range(int(within / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not met in time")


def _effects(path: Path) -> list[list]:
    if not path.exists():
        return []
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def _worker_proc(url: str, effects: Path, step_s: float, lease: float) -> subprocess.Popen:
    env = {**os.environ, "OMIUM_DATABASE_URL": url, "OMIUM_TEST_EFFECTS": str(effects),
           "OMIUM_TEST_STEP_S": str(step_s)}
    return subprocess.Popen([sys.executable, "-m", "omium.cli", "worker", "--lease", str(lease),
                             "--poll", "0.05", "--grace", "0.5"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


async def test_in_process_workers_complete_queued_executions(store: Store, tmp_path: Path,
                                                             monkeypatch) -> None:
    monkeypatch.setenv("OMIUM_TEST_EFFECTS", str(tmp_path / "fx"))
    ids = await _submit(store, 12, _definition())
    stop = asyncio.Event()
    workers = [Worker(store, concurrency=3, poll_s=0.02, lease_s=5) for _ in range(2)]
    tasks = [asyncio.ensure_future(w.run(stop)) for w in workers]
    await _wait_for(store, ids, {"completed"}, 20)
    stop.set()
    await asyncio.gather(*tasks)
    assert sum(w.completed for w in workers) == 12
    runs = Counter((e[0], e[1]) for e in _effects(tmp_path / "fx"))
    assert set(runs.values()) == {1} and len(runs) == 12 * len(AGENTS)
    rec = await store.get_execution("e0")
    assert rec is not None and rec.result["output"] == {"total": 4, "by": "s4"}
    assert rec.lease_owner is None and rec.lease_epoch == 1


async def test_an_idle_worker_starts_what_its_process_submits_at_once(store: Store,
                                                                     tmp_path: Path,
                                                                     monkeypatch) -> None:
    """``omium serve``'s workers share the API's store: a submit wakes an idle one, which
    otherwise would wait for its next poll (an hour here) to start it."""
    monkeypatch.setenv("OMIUM_TEST_EFFECTS", str(tmp_path / "fx"))
    stop = asyncio.Event()
    worker = Worker(store, poll_s=3600, lease_s=5)
    task = asyncio.ensure_future(worker.run(stop))
    for n in range(1, 4):  # the first is found by the first claim; the rest wake the worker
        ids = await _submit(store, 1, _definition(), prefix=f"wake{n}-")
        await _wait_for(store, ids, {"completed"}, 20)
        assert worker.completed == n
    stop.set()
    await task


async def test_paused_worker_is_fenced_after_its_lease_is_reclaimed(
        database_url: str, tmp_path: Path) -> None:
    effects = tmp_path / "fx"
    async with open_store(database_url) as store:
        [eid] = await _submit(store, 1, _definition())
    a = _worker_proc(database_url, effects, step_s=0.4, lease=1.0)
    try:
        await _until(lambda: len(_effects(effects)) >= 2)
        # Into the second agent's 0.4 s step, after the writes of its start: a process
        # stopped inside a transaction would hold SQLite's one write lock (or PostgreSQL's
        # row lock) and stall every other worker, which is not what this test is about.
        await asyncio.sleep(0.15)
        a.send_signal(signal.SIGSTOP)  # paused mid-execution, lease not renewed
        async with open_store(database_url) as store:
            before = [c.agent_id for c in await store.get_checkpoints(eid)]
            b = _worker_proc(database_url, effects, step_s=0.0, lease=5.0)
            try:
                await _wait_for(store, [eid], {"completed"}, 30)
                a.send_signal(signal.SIGCONT)  # revived: its writes must be refused
                await asyncio.sleep(1.5)
                rec = await store.get_execution(eid)
                cps = await store.get_checkpoints(eid, include_superseded=True)
                events = await store.get_events(eid)
            finally:
                b.terminate()
                b.wait(10)
    finally:
        a.send_signal(signal.SIGCONT)
        a.terminate()
        _, a_err = a.communicate(timeout=10)
    assert rec is not None and rec.status == "completed" and rec.lease_epoch == 2
    assert [c.agent_id for c in cps] == AGENTS  # one checkpoint per agent, no stale extras
    assert {c.lease_epoch for c in cps if c.agent_id in before} == {1}
    assert {c.lease_epoch for c in cps if c.agent_id not in before} == {2}
    claims = [e.data for e in events if e.type == "claimed"]
    assert [(c["epoch"], c["reclaimed"]) for c in claims] == [(1, False), (2, True)]
    assert "lost to another worker" in a_err
    runs = Counter(e[1] for e in _effects(effects))
    for agent in before:
        assert runs[agent] == 1  # checkpointed before the pause: never run again


async def test_cancel_stops_a_running_execution(sqlite_store: Store, tmp_path: Path,
                                                monkeypatch) -> None:
    monkeypatch.setenv("OMIUM_TEST_EFFECTS", str(tmp_path / "fx"))
    monkeypatch.setenv("OMIUM_TEST_STEP_S", "0.3")
    [eid] = await _submit(sqlite_store, 1, _definition())
    stop = asyncio.Event()
    worker = Worker(sqlite_store, poll_s=0.02, lease_s=0.3)
    task = asyncio.ensure_future(worker.run(stop))
    await _until(lambda: bool(_effects(tmp_path / "fx")))
    assert await sqlite_store.request_cancel(eid, "local") == "cancelling"
    await _wait_for(sqlite_store, [eid], {"cancelled"}, 5)
    stop.set()
    await task
    assert len(await sqlite_store.get_checkpoints(eid)) < len(AGENTS)


async def test_sigterm_drains_then_releases_unfinished_work(database_url: str,
                                                            tmp_path: Path) -> None:
    effects = tmp_path / "fx"
    async with open_store(database_url) as store:
        [eid] = await _submit(store, 1, _definition())
        a = _worker_proc(database_url, effects, step_s=1.0, lease=30.0)
        await _until(lambda: bool(_effects(effects)))
        a.send_signal(signal.SIGTERM)  # grace 0.5 s < the 4 s of work left
        assert a.wait(15) == 0
        rec = await store.get_execution(eid)
        assert rec is not None and (rec.status, rec.lease_owner) == ("queued", None)
        stop = asyncio.Event()
        os.environ["OMIUM_TEST_EFFECTS"] = str(effects)
        try:
            task = asyncio.ensure_future(Worker(store, poll_s=0.02).run(stop))
            await _wait_for(store, [eid], {"completed"}, 20)
            stop.set()
            await task
        finally:
            del os.environ["OMIUM_TEST_EFFECTS"]
    assert rec.lease_epoch == 2  # the release moved the epoch on: the old run is fenced


@pytest.mark.parametrize("n", [1])
def test_worker_help_lists_its_options(n: int) -> None:
    out = subprocess.run([sys.executable, "-m", "omium.cli", "worker", "--help"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    for option in ("--concurrency", "--lease", "--grace"):
        assert option in out
