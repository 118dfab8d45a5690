"""The core promise: a killed `omium run` resumes where it stopped; no finished agent runs
twice, and the result equals an uninterrupted run's."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml

from omium import MultiAgentExecutor, open_store

ROOT = Path(__file__).resolve().parent.parent
AGENTS = [f"step{i}" for i in range(1, 6)]


def _workflow(path: Path) -> Path:
    wf = {"name": "side_effects", "execution_order": "sequential", "inputs": {"total": 0},
          "agents": [{"id": a, "definition": {"callable": "tests.agents_for_tests:side_effect"},
                      "input_schema": {"type": "object", "required": ["total"]},
                      "retry": {"max_attempts": 1}} for a in AGENTS]}
    path.write_text(yaml.safe_dump(wf))
    return path


def _omium(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "omium.cli", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _effects(path: Path) -> list[list]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


async def _checkpointed(url: str, execution_id: str) -> list[str]:
    async with open_store(url) as store:
        return [c.agent_id for c in await store.get_checkpoints(execution_id)]


async def test_sigkill_mid_workflow_then_resume(tmp_path: Path, database_url: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    wf = _workflow(tmp_path / "wf.yaml")
    effects = tmp_path / "effects.jsonl"
    monkeypatch.setenv("OMIUM_TEST_EFFECTS", str(tmp_path / "clean-run.jsonl"))
    env = {**os.environ, "OMIUM_DATABASE_URL": database_url, "OMIUM_TEST_EFFECTS": str(effects),
           "OMIUM_TEST_STEP_S": "0.4"}
    proc = _omium("run", str(wf), "--execution-id", "victim", "--json", env=env)
    deadline = time.monotonic() + 30
    while len(_effects(effects)) < 3 and time.monotonic() < deadline:  # step3 is in flight
        assert proc.poll() is None, proc.communicate()
        await asyncio.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL

    before_kill = await _checkpointed(database_url, "victim")
    assert before_kill == AGENTS[: len(before_kill)] and len(before_kill) >= 2
    in_flight = {e[1] for e in _effects(effects)} - set(before_kill)

    resumed = _omium("resume", "victim", "--json", env={**env, "OMIUM_TEST_STEP_S": "0"})
    stdout, stderr = resumed.communicate(timeout=60)
    assert resumed.returncode == 0, stderr
    result = json.loads(stdout)
    assert result["status"] == "completed"
    assert result["reused"] == before_kill

    runs = Counter(e[1] for e in _effects(effects))
    for agent in AGENTS:
        if agent in before_kill:
            assert runs[agent] == 1, f"{agent} was checkpointed but ran {runs[agent]} times"
        elif agent in in_flight:
            assert runs[agent] <= 2
        else:
            assert runs[agent] == 1
    # The idempotency key an agent sees is the same on its re-run after the crash.
    keys = {e[1]: set() for e in _effects(effects)}
    for e in _effects(effects):
        keys[e[1]].add(e[3])
    assert all(len(k) == 1 for k in keys.values())

    async with MultiAgentExecutor(open_store(database_url)) as ex:
        clean = await ex.execute("undisturbed", str_workflow(wf))
        events = await (await ex.store()).get_events("victim")
    assert clean.status == "completed"
    assert result["results"] == clean.results and result["output"] == clean.output
    assert any(e.data.get("failure_type") == "worker_lost" for e in events)


def str_workflow(path: Path) -> dict:
    from omium.workflow import load_workflow

    return load_workflow(path).model_dump()


async def test_same_execution_id_never_starts_twice(tmp_path: Path) -> None:
    wf = _workflow(tmp_path / "wf.yaml")
    effects = tmp_path / "effects.jsonl"
    env = {**os.environ, "OMIUM_DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite",
           "OMIUM_TEST_EFFECTS": str(effects)}
    outputs = []
    for _ in range(2):
        proc = _omium("run", str(wf), "--execution-id", "once", "--json", env=env)
        stdout, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 0, stderr
        outputs.append(json.loads(stdout))
    assert len(_effects(effects)) == len(AGENTS)
    assert outputs[0]["output"] == outputs[1]["output"] == {"total": 5, "by": "step5"}


@pytest.mark.parametrize("fail_at", ["step3"])
async def test_resume_after_fixed_failure_reuses_checkpoints(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fail_at: str) -> None:
    effects = tmp_path / "effects.jsonl"
    monkeypatch.setenv("OMIUM_TEST_EFFECTS", str(effects))
    monkeypatch.setenv("OMIUM_TEST_FAIL_AT", fail_at)
    wf = str_workflow(_workflow(tmp_path / "wf.yaml"))
    wf["agents"][2]["definition"]["callable"] = "tests.agents_for_tests:side_effect_or_fail"
    async with MultiAgentExecutor() as ex:
        first = await ex.execute("fixme", wf)
        assert (first.status, first.failed_agent) == ("failed", fail_at)
        assert first.failure_type == "exception"
        monkeypatch.delenv("OMIUM_TEST_FAIL_AT")  # the "fix"
        second = await ex.resume("fixme")
    assert second.status == "completed"
    assert second.reused == ["step1", "step2"]
    runs = Counter(e[1] for e in _effects(effects))
    assert runs == {"step1": 1, "step2": 1, "step3": 2, "step4": 1, "step5": 1}
