"""Worker capacity: I/O-bound executions run by the hundreds at once in one process (async
agents on the event loop, sync agents in the agent threads), and their leases are renewed
together, one statement for all, while cancel requests and renewal failures still stop
exactly the runs they concern."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from omium.agents.python import DEFAULT_THREADS, agent_threads
from omium.api.settings import Settings
from omium.engine.graph import prepare
from omium.engine.worker import DEFAULT_CONCURRENCY, Worker
from omium.store import ExecutionRecord
from omium.store.base import Store
from tests import capacity_agents

ROOT = Path(__file__).resolve().parent.parent
# More than the old defaults (4 executions per worker, 64 agent threads) by a margin.
N = 150


def _definition(fn: str) -> dict[str, Any]:
    wf = prepare({"name": "cap", "agents": [
        {"id": "wait", "definition": {"callable": f"tests.capacity_agents:{fn}"},
         "retry": {"max_attempts": 1}}]}).workflow
    return wf.model_dump(mode="json", exclude_none=True)


async def _submit(store: Store, fn: str, n: int) -> list[str]:
    definition = _definition(fn)
    ids = [f"c{i:04d}" for i in range(n)]
    for i, eid in enumerate(ids):
        await store.create_execution(ExecutionRecord(eid, "cap", definition,
                                                     {"i": i, "n": n}, status="queued"))
    return ids


async def _statuses(store: Store, ids: list[str]) -> dict[str, str]:
    return {eid: rec.status for eid in ids if (rec := await store.get_execution(eid))}


async def _until_all(store: Store, ids: list[str], statuses: set[str],
                     within_s: float = 120.0) -> dict[str, str]:
    got: dict[str, str] = {}
    for _ in range(int(within_s / 0.05)):
        got = await _statuses(store, ids)
        if len(got) == len(ids) and set(got.values()) <= statuses:
            return got
        await asyncio.sleep(0.05)
    raise AssertionError(f"not all {statuses}: {sorted(set(got.values()))}")


@pytest.mark.parametrize("fn", ["all_at_once", "all_at_once_sync"])
async def test_a_default_worker_runs_hundreds_of_waiting_executions_at_once(
        store: Store, fn: str) -> None:
    # Each agent finishes only once all N wait together: with fewer slots (or, for the sync
    # agent, fewer threads) than N they would time out and fail.
    capacity_agents.reset(N)
    ids = await _submit(store, fn, N)
    stop = asyncio.Event()
    worker = Worker(store, poll_s=0.02)
    assert worker.concurrency == DEFAULT_CONCURRENCY >= 1000
    task = asyncio.ensure_future(worker.run(stop))
    try:
        got = await _until_all(store, ids, {"completed", "failed"})
    finally:
        stop.set()
        await task
    assert set(got.values()) == {"completed"}
    assert worker.completed == N


async def test_one_renewal_for_all_held_leases_and_cancel_stops_only_its_run(
        sqlite_store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    capacity_agents.reset(1)
    ids = await _submit(sqlite_store, "hold", 5)
    calls: list[set[str]] = []
    renew_leases = sqlite_store.renew_leases

    async def counted(held: Any, lease_s: float) -> Any:
        calls.append({eid for eid, _ in held})
        return await renew_leases(held, lease_s)

    async def one_by_one(*_a: Any, **_k: Any) -> Any:
        raise AssertionError("a worker renews its leases together")

    monkeypatch.setattr(sqlite_store, "renew_leases", counted)
    monkeypatch.setattr(sqlite_store, "renew_lease", one_by_one)
    stop = asyncio.Event()
    worker = Worker(sqlite_store, poll_s=0.02, lease_s=0.3)
    task = asyncio.ensure_future(worker.run(stop))
    try:
        await _until_all(sqlite_store, ids, {"running"})
        for _ in range(400):  # every run holding its lease
            if len(worker._held) == len(ids):
                break
            await asyncio.sleep(0.05)
        before = len(calls)
        for _ in range(400):  # a few beats later: all five leases in each renewal
            if len(calls) >= before + 3:
                break
            await asyncio.sleep(0.05)
        assert len(calls) >= before + 3 and all(c == set(ids) for c in calls[before:])
        assert await sqlite_store.request_cancel(ids[0], "local") == "cancelling"
        await _until_all(sqlite_store, ids[:1], {"cancelled"})
        assert capacity_agents.stopped == {ids[0]}
        await asyncio.sleep(0.3)  # a beat or more later the others still run, still renewed
        assert set((await _statuses(sqlite_store, ids[1:])).values()) == {"running"}
        assert calls[-1] == set(ids[1:])
        capacity_agents.release()
        await _until_all(sqlite_store, ids[1:], {"completed"})
    finally:
        stop.set()
        await task


async def test_runs_stop_when_their_leases_cannot_be_renewed(
        sqlite_store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    capacity_agents.reset(1)
    ids = await _submit(sqlite_store, "hold", 3)

    async def down(*_a: Any, **_k: Any) -> Any:
        raise ConnectionError("database unreachable")

    monkeypatch.setattr(sqlite_store, "renew_leases", down)
    stop = asyncio.Event()
    worker = Worker(sqlite_store, poll_s=0.02, lease_s=0.3, concurrency=3, grace_s=0.5)
    task = asyncio.ensure_future(worker.run(stop))
    try:
        for _ in range(400):  # a lease's worth of failed renewals: every run is stopped
            if capacity_agents.stopped == set(ids):
                break
            await asyncio.sleep(0.05)
        assert capacity_agents.stopped == set(ids)
        assert worker.completed == 0
    finally:
        stop.set()
        await task


def test_agent_threads_are_configurable_and_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMIUM_AGENT_THREADS", raising=False)
    assert agent_threads() == DEFAULT_THREADS >= 1000
    assert Settings.from_env().agent_threads == DEFAULT_THREADS
    monkeypatch.setenv("OMIUM_AGENT_THREADS", "2000")
    assert agent_threads() == 2000
    for bad in ("0", "many"):
        monkeypatch.setenv("OMIUM_AGENT_THREADS", bad)
        with pytest.raises(ValueError, match="OMIUM_AGENT_THREADS"):
            agent_threads()
        with pytest.raises(ValueError, match="OMIUM_AGENT_THREADS"):
            Settings.from_env()


@pytest.mark.parametrize("command", [["worker"], ["serve"]])
def test_the_cli_refuses_a_bad_thread_count_and_defaults_to_1000(command: list[str]) -> None:
    env = {"PATH": "/usr/bin:/bin", "OMIUM_AGENT_THREADS": "0", "HOME": "/tmp"}
    done = subprocess.run([sys.executable, "-m", "omium.cli", *command, "--db",
                           "sqlite:////nonexistent/dir/x.db"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode != 0 and "OMIUM_AGENT_THREADS must be >= 1" in done.stderr
    helped = subprocess.run([sys.executable, "-m", "omium.cli", *command, "--help"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60, check=True).stdout
    assert "1000" in helped
