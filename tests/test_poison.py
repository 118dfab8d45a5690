"""An agent cannot end the process that runs it, and an execution that keeps killing its
workers anyway (os._exit) is dead-lettered after max_recoveries reclaims."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from omium import open_store
from omium.agents.base import AgentContext, contained
from omium.agents.python import PythonAgent
from omium.api.settings import Settings
from omium.engine.attempts import run_with_retries
from omium.engine.executor import MultiAgentExecutor
from omium.engine.failures import Failure
from omium.engine.graph import prepare
from omium.engine.worker import Worker
from omium.store import ExecutionRecord
from omium.store.base import Store
from omium.workflow.model import AgentSpec
from tests._processes import ROOT, free_port, omium, wait_http

P = "tests.poison_agents"
ENDED = {"completed", "failed", "cancelled", "awaiting_review"}


def _agent(agent_id: str, fn: str, **extra: Any) -> dict[str, Any]:
    return {"id": agent_id, "definition": {"callable": fn},
            "retry": {"max_attempts": 2, "backoff_s": 0}, **extra}


def _one(fn: str) -> dict[str, Any]:
    return {"name": fn.rsplit(":", 1)[1], "agents": [_agent("a", fn)]}


# -- an agent's BaseException is its failure, over HTTP against a real `omium serve`
async def test_agents_that_exit_or_interrupt_fail_and_the_server_keeps_serving(
        tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/serve.db"
    env = {**os.environ, "OMIUM_DATABASE_URL": url}
    created = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "omium.cli", "tenants", "create", "acme",
                         "--json"], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    headers = {"Authorization": f"Bearer {json.loads(created.stdout)['api_key']}"}
    port = free_port()
    server = omium("serve", "--port", str(port), env=env, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    crashing = {f"{P}:exits": "SystemExit: 3", f"{P}:exits_async": "SystemExit: 3",
                f"{P}:interrupts": "KeyboardInterrupt",
                f"{P}:interrupts_async": "KeyboardInterrupt",
                f"{P}:misuses_generator_exit": "GeneratorExit: not a generator",
                f"{P}:cancels_itself": "CancelledError",
                f"{P}:stop_iteration": "StopIteration"}
    try:
        await wait_http(f"{base}/health")
        async with aiohttp.ClientSession(base_url=base, headers=headers) as http:

            async def submit(workflow: dict[str, Any]) -> str:
                async with http.post("/api/v1/executions", json={"workflow": workflow}) as r:
                    assert r.status == 202, await r.text()
                    return str((await r.json())["execution_id"])

            async def ended(execution_id: str) -> dict[str, Any]:
                for _ in range(600):
                    async with http.get(f"/api/v1/executions/{execution_id}") as r:
                        body = await r.json()
                    if body["status"] in ENDED:
                        return body
                    await asyncio.sleep(0.05)
                raise AssertionError(f"{execution_id} still {body['status']}")

            ids = {fn: await submit(_one(fn)) for fn in crashing}
            refused = await submit({"name": "handoff", "agents": [
                _agent("first", "tests.agents_for_tests:echo"),
                _agent("second", "tests.agents_for_tests:echo",
                       definition={"callable": "tests.agents_for_tests:echo",
                                   "accept": f"{P}:accept_exits"})]})
            bodies = {fn: await ended(i) for fn, i in ids.items()}
            handoff = await ended(refused)
            async with http.get("/health") as r:
                assert r.status == 200
            normal = await ended(await submit({"name": "normal", "agents": [
                _agent("a", "tests.agents_for_tests:echo")]}))
    finally:
        server.terminate()
        _, server_err = server.communicate(timeout=20)
    for fn, text in crashing.items():
        body = bodies[fn]
        assert body["status"] == "failed", (fn, body)
        assert body["failure"]["failure_type"] == "exception"
        assert body["failure"]["error"] == text, fn
        # Retried per its retry policy, like any exception.
        attempts = [e for e in body["events"] if e["type"] == "failure_detected"]
        assert [e["data"]["attempt"] for e in attempts] == [1, 2], fn
    # A hook's SystemExit refuses the handoff; it does not end the server either.
    assert handoff["status"] == "failed"
    assert handoff["failure"]["failure_type"] == "no_consensus"
    [record] = handoff["handoffs"]
    assert record["acks"]["second"] == {"ack": False,
                                        "reason": "accept hook raised SystemExit: 4"}
    assert normal["status"] == "completed"
    assert server.returncode in (0, -15), server_err  # it stopped when told to, not before


async def _attempt(fn: str, **spec: Any) -> Failure:
    agent_spec = AgentSpec(id="a", definition={"callable": f"{P}:{fn}"}, **spec)

    async def no_sleep(_s: float) -> None:
        return None

    async def on_failed(*_a: object) -> None:
        return None

    outcome = await run_with_retries(
        PythonAgent(agent_spec), agent_spec, {}, execution_id="e", agent_id="a",
        tenant_id="t", workflow_name="w", on_failed_attempt=on_failed, sleep=no_sleep)
    assert isinstance(outcome, Failure)
    return outcome


@pytest.mark.parametrize("timeout_s", [None, 5.0])
async def test_an_exit_under_a_timeout_is_the_agents_failure(timeout_s: float | None) -> None:
    # wait_for runs the agent in a task of its own, where asyncio re-raises SystemExit out of
    # the event loop: the agent's exception must be contained inside that task.
    failure = await _attempt("exits_async", timeout_s=timeout_s)
    assert (failure.failure_type, failure.error, failure.attempts) == (
        "exception", "SystemExit: 3", 3)


def test_a_sync_agent_stuck_for_good_times_out_and_omium_run_still_exits(tmp_path: Path) -> None:
    # Python cannot kill the agent's thread; the process must not wait for it at exit either.
    wf = tmp_path / "hangs.yaml"
    wf.write_text(json.dumps({"name": "hangs", "agents": [_agent(
        "a", f"{P}:hangs", timeout_s=0.5, retry={"max_attempts": 1})]}))
    ran = subprocess.run([sys.executable, "-m", "omium.cli", "run", str(wf), "--json",
                          "--db", f"sqlite:///{tmp_path / 'o.db'}"], cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
                         text=True, timeout=120)  # a hang guard: an hour if the thread held it
    assert ran.returncode == 1, ran.stderr
    result = json.loads(ran.stdout)
    assert (result["status"], result["failure_type"]) == ("failed", "timeout")


async def test_real_cancellation_still_stops_an_agent() -> None:
    spec = AgentSpec(id="a", definition={"callable": "tests.agents_for_tests:slow"})
    agent = PythonAgent(spec)
    ctx = AgentContext("e", "a", 1)
    task = asyncio.ensure_future(contained(agent.run({}, ctx)))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


# -- reclaims are counted, and a resume gives the budget back (both backends)
async def _queued(store: Store, execution_id: str, definition: dict[str, Any]) -> None:
    await store.create_execution(ExecutionRecord(execution_id, definition["name"], definition,
                                                 {"total": 0}, status="queued"))


def _definition(fn: str, **extra: Any) -> dict[str, Any]:
    wf = prepare({"name": "p", "agents": [_agent("poison", fn)], **extra}).workflow
    return wf.model_dump(mode="json", exclude_none=True)


async def test_a_reclaim_counts_a_recovery_and_a_resume_resets_it(store: Store) -> None:
    await _queued(store, "x", _definition("tests.agents_for_tests:echo"))
    seen = []
    for _ in range(3):
        claim = await store.claim_execution("w", 0.01)
        assert claim is not None
        seen.append((claim[1], claim[0].recoveries))
        await asyncio.sleep(0.03)  # the claimer "dies": its lease runs out
    assert seen == [(False, 0), (True, 1), (True, 2)]
    rec = await store.get_execution("x")
    assert rec is not None and rec.recoveries == 2
    # A graceful release keeps the count: restarts cannot launder a poison execution.
    claim = await store.claim_execution("w", 30)
    assert claim is not None and claim[0].recoveries == 3
    assert await store.release_lease("x", claim[0].lease_epoch)
    assert (await store.get_execution("x")).recoveries == 3  # type: ignore[union-attr]
    claim = await store.claim_execution("w", 30)
    assert claim is not None
    await store.update_execution("x", status="failed", epoch=claim[0].lease_epoch,
                                 failure_type="max_recoveries_exceeded", lease_owner=None,
                                 lease_expires_at=None)
    # The API's resume (requeue for a worker) resets it: the fixed run gets its full budget.
    result = await MultiAgentExecutor(store).resume("x", drive=False)
    assert result.status == "queued"
    rec = await store.get_execution("x")
    assert rec is not None and rec.recoveries == 0 and rec.failure_type is None


async def test_a_busy_worker_leaves_a_suspect_to_run_alone(store: Store) -> None:
    definition = _definition("tests.agents_for_tests:echo")
    await _queued(store, "suspect", definition)
    claim = await store.claim_execution("dead", 0.01)
    assert claim is not None
    await asyncio.sleep(0.03)
    await _queued(store, "innocent", definition)
    # Busy: nothing while a suspect waits (it would take the innocent down with it).
    assert await store.claim_execution("w", 30, suspects=False) is None
    claim = await store.claim_execution("w", 30)  # idle: the suspect, oldest first
    assert claim is not None and (claim[0].id, claim[1]) == ("suspect", True)
    claim = await store.claim_execution("w2", 30, suspects=False)
    assert claim is not None and claim[0].id == "innocent"


async def test_past_max_recoveries_the_worker_fails_it_without_running_it(
        store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    effects = tmp_path / "fx"
    monkeypatch.setenv("OMIUM_TEST_EFFECTS", str(effects))
    fn = "tests.agents_for_tests:side_effect"
    await _queued(store, "dead", _definition(fn))
    await _queued(store, "tolerant", _definition(fn, max_recoveries=1))
    for _ in range(2):
        assert await store.claim_execution("lost", 0.01) is not None
    await asyncio.sleep(0.03)  # both leases ran out: the next claims are reclaims
    stop = asyncio.Event()
    worker = Worker(store, max_recoveries=0, poll_s=0.02, lease_s=5)
    task = asyncio.ensure_future(worker.run(stop))
    try:
        for _ in range(500):
            recs = [await store.get_execution(i) for i in ("dead", "tolerant")]
            if all(r is not None and r.status in ENDED for r in recs):
                break
            await asyncio.sleep(0.02)
    finally:
        stop.set()
        await task
    dead, tolerant = recs
    assert dead is not None and tolerant is not None
    assert (dead.status, dead.failure_type, dead.failed_agent) == (
        "failed", "max_recoveries_exceeded", "poison")
    assert dead.error == ("the worker running this execution was lost 1 times "
                          "(max_recoveries 0); agent(s) in flight: poison; fix the cause, "
                          "then resume it")
    assert dead.lease_owner is None and dead.lease_expires_at is None
    events = [e.type for e in await store.get_events("dead")]
    assert events[-3:] == ["claimed", "failure_detected", "dead_lettered"]
    # The workflow's own max_recoveries wins over the worker's: this one ran.
    assert tolerant.status == "completed"
    runs = Counter(json.loads(line)[0] for line in effects.read_text().splitlines())
    assert runs == Counter({"tolerant": 1})  # the dead-lettered one ran no agent


def test_max_recoveries_settings_name_the_bad_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMIUM_MAX_RECOVERIES", "2")
    assert Settings.from_env().max_recoveries == 2
    monkeypatch.setenv("OMIUM_MAX_RECOVERIES", "many")
    with pytest.raises(ValueError, match="OMIUM_MAX_RECOVERIES must be an integer"):
        Settings.from_env()
    with pytest.raises(ValueError, match="max_recoveries must be >= 0"):
        Worker(None, max_recoveries=-1)  # type: ignore[arg-type]
    run = subprocess.run([sys.executable, "-m", "omium.cli", "worker", "--max-recoveries",
                          "-1"], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 2 and "--max-recoveries" in run.stderr


# -- os._exit: workers die for real, the execution is dead-lettered, the rest completes
async def test_an_execution_that_kills_its_workers_is_dead_lettered(
        database_url: str, tmp_path: Path) -> None:
    effects = tmp_path / "fx"
    env = {**os.environ, "OMIUM_DATABASE_URL": database_url,
           "OMIUM_TEST_EFFECTS": str(effects), "OMIUM_TEST_STEP_S": "0.05"}
    env.pop("OMIUM_TEST_FIXED", None)
    normal = _definition("tests.agents_for_tests:side_effect")
    async with open_store(database_url) as store:
        await _queued(store, "poison", _definition(f"{P}:hard_exit"))
        ids = [f"n{i}" for i in range(20)]
        for i in ids:
            await _queued(store, i, normal)

        def start() -> subprocess.Popen:
            return omium("worker", "--lease", "1", "--poll", "0.05", "--grace", "0.5",
                         "--concurrency", "4", "--max-recoveries", "3", env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        deaths = 0
        proc = start()
        deadline = time.monotonic() + 120
        try:
            while time.monotonic() < deadline:
                recs = [await store.get_execution(i) for i in ["poison", *ids]]
                if all(r is not None and r.status in ENDED for r in recs):
                    break
                if proc.poll() is not None:  # killed by the poison: restart it, as systemd would
                    deaths += 1
                    if deaths >= 5:
                        break
                    proc = start()
                await asyncio.sleep(0.05)
        finally:
            proc.terminate()
            proc.wait(20)
        poison, *others = recs
        events = await store.get_events("poison")
    assert poison is not None and poison.status == "failed", (deaths, poison)
    assert poison.failure_type == "max_recoveries_exceeded"
    assert "lost 4 times (max_recoveries 3); agent(s) in flight: poison" in (poison.error or "")
    assert poison.recoveries == 4
    assert deaths == 4  # the first run and three recoveries; the fourth reclaim did not run it
    assert [e.type for e in events][-2:] == ["failure_detected", "dead_lettered"]
    assert [(r.id, r.status) for r in others if r is not None and r.status != "completed"] == []
    # Visible where an operator looks for failures...
    listed = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "omium.cli", "executions", "list", "--status",
                         "failed", "--json"], cwd=ROOT, env=env, capture_output=True, text=True,
        check=True)
    assert [(r["id"], r["failure_type"]) for r in json.loads(listed.stdout)] == [
        ("poison", "max_recoveries_exceeded")]
    # ...and, once fixed, resumed by hand with its full budget.
    fixed = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "omium.cli", "resume", "poison", "--json"],
        cwd=ROOT, env={**env, "OMIUM_TEST_FIXED": "1"}, capture_output=True, text=True)
    assert fixed.returncode == 0, fixed.stderr
    async with open_store(database_url) as store:
        rec = await store.get_execution("poison")
    assert rec is not None and (rec.status, rec.recoveries) == ("completed", 0)
