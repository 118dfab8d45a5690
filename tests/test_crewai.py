"""``framework: crewai`` with the real crewai package: a crew's agents on CrewAI's own ``LLM``
at the endpoint Omium lends them (the CLI run's in-process gateway, the fake OpenAI server
behind it), billed to the execution and agent; each finished task checkpointed, so a crew
retried or killed mid-crew runs only its unfinished tasks; no network peer but loopback; the
missing-extra message."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

pytest.importorskip("crewai")

from omium import MultiAgentExecutor, open_store
from omium.agents.base import AgentContext
from omium.agents.runtime import AgentRuntime, lend
from omium.contrib.crewai import CrewAIAgent
from omium.engine.graph import prepare
from omium.errors import WorkflowValidationError
from omium.store.base import Store
from omium.testing.fake_server import Behaviour, FakeOpenAIServer
from tests._api_harness import Api
from tests._gateway_util import LOCAL_CALL_NANO, fake_backends, hosted_nano
from tests._missing_extra import api_refuses, cli_refuses
from tests._processes import ROOT
from tests.crewai_crews import VERDICT

CREWS = "tests.crewai_crews"


def crew(agent_id: str, factory: str, attempts: int = 2) -> dict[str, Any]:
    return {"id": agent_id, "framework": "crewai",
            "definition": {"crew": f"{CREWS}:{factory}"},
            "retry": {"max_attempts": attempts, "backoff_s": 0}}


def workflow(*agents: dict[str, Any], **inputs: Any) -> dict[str, Any]:
    return {"name": "crew", "inputs": inputs or {"name": "Ada", "amount": 5000},
            "agents": list(agents)}


async def run_retried_crew(store: Store, crew: str) -> Any:
    """A fresh execution of one crewai agent, ``credit``, running the factory ``crew`` with
    two attempts (no backoff): its result."""
    wf = workflow({"id": "credit", "framework": "crewai", "definition": {"crew": crew},
                   "retry": {"max_attempts": 2, "backoff_s": 0}})
    async with MultiAgentExecutor(store) as ex:
        return await ex.execute(uuid.uuid4().hex, wf)


def task_of(request: dict[str, Any]) -> str:
    """The task a request to the model was for (CrewAI's prompt names it first)."""
    text = request["messages"][-1]["content"]
    return text.split("Current Task: ", 1)[1].split()[0]


@pytest.fixture
async def servers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                  ) -> AsyncIterator[tuple[FakeOpenAIServer, FakeOpenAIServer]]:
    async with fake_backends(tmp_path, monkeypatch) as (local, hosted):
        monkeypatch.setenv("CREW_TEST_BASE_URL", local.base_url)
        yield local, hosted


# -- outputs and billing
async def test_a_one_task_crew_answers_raw_through_the_gateway_billed_to_the_nano_dollar(
        store: Store, servers: tuple[FakeOpenAIServer, FakeOpenAIServer]) -> None:
    local, hosted = servers
    execution_id = uuid.uuid4().hex
    async with MultiAgentExecutor(store) as ex:
        result = await ex.execute(execution_id, workflow(crew("kyc_agent", "one_task")))
    assert result.status == "completed", result.error
    out = result.results["kyc_agent"]
    assert out["raw"].startswith("echo: Current Task: assess Ada ")
    assert out == {"raw": out["raw"], "tasks": [{"name": "assess", "raw": out["raw"]}]}
    assert (local.count, hosted.count) == (0, 1)
    [record] = await store.usage_records(execution_id=execution_id)
    assert (record.agent_id, record.backend, record.prompt_tokens, record.completion_tokens,
            record.cost_nano, record.estimated) == (
        "kyc_agent", "openai", 120, 30, hosted_nano(120, 30), False)


@pytest.mark.parametrize("factory", ["research_and_pydantic_verdict",
                                     "research_and_json_verdict"])
async def test_the_last_tasks_structured_output_is_the_output_with_every_tasks_raw_text(
        store: Store, servers: tuple[FakeOpenAIServer, FakeOpenAIServer], factory: str) -> None:
    local, _ = servers
    execution_id = uuid.uuid4().hex
    async with MultiAgentExecutor(store) as ex:
        result = await ex.execute(execution_id, workflow(crew("credit_crew", factory)))
    assert result.status == "completed", result.error
    out = result.results["credit_crew"]
    research = out["tasks"][0]["raw"]
    assert research.startswith("echo: Current Task: research Ada ")
    assert out == {"score": 7, "approved": True, "tasks": [
        {"name": "research", "raw": research}, {"name": "verdict", "raw": VERDICT}]}
    assert [task_of(r) for r in local.requests] == ["research", "decide"]
    decide = local.requests[1]["messages"][-1]["content"]
    assert "decide on Ada asking 5000" in decide and research in decide  # its context
    records = await store.usage_records(execution_id=execution_id)
    assert sorted((r.agent_id, r.prompt_tokens, r.completion_tokens, r.cost_nano)
                  for r in records) == [("credit_crew", 50, 10, LOCAL_CALL_NANO),
                                        ("credit_crew", 70, 20, LOCAL_CALL_NANO)]


async def test_a_factory_without_arguments_is_called_without_the_context(
        sqlite_store: Store, servers: tuple[FakeOpenAIServer, FakeOpenAIServer]) -> None:
    local, _ = servers
    async with MultiAgentExecutor(sqlite_store) as ex:
        result = await ex.execute("no-ctx", workflow(crew("noter", "without_ctx"),
                                                     topic="rates"))
    assert result.status == "completed", result.error
    assert result.results["noter"]["raw"].startswith("echo: Current Task: note rates ")
    assert local.count == 1


@pytest.mark.parametrize(("factory", "message"), [
    ("not_a_crew", "returned a Agent, not a crewai.Crew"),
    ("reserved_field", "declares a field 'tasks'")])
async def test_a_factory_that_makes_no_usable_crew_fails_the_agent_saying_why(
        sqlite_store: Store, servers: tuple[FakeOpenAIServer, FakeOpenAIServer], factory: str,
        message: str) -> None:
    local, _ = servers
    async with MultiAgentExecutor(sqlite_store) as ex:
        result = await ex.execute(f"bad-{factory}", workflow(crew("a", factory, attempts=1)))
    assert result.status == "failed"
    assert message in str(result.error)
    assert local.count == 0


def test_bad_definitions_are_refused_before_anything_runs() -> None:
    for definition, where in [({}, "definition.crew"),
                              ({"crew": f"{CREWS}:one_task", "extra": 1}, "definition"),
                              ({"crew": 3}, "definition.crew"),
                              ({"crew": f"{CREWS}:VERDICT"}, "definition.crew"),
                              ({"crew": "tests.no_such_module:crew"}, "definition.crew")]:
        with pytest.raises(WorkflowValidationError) as err:
            prepare({"name": "bad", "agents": [{"id": "a", "framework": "crewai",
                                                "definition": definition}]})
        assert any(where in str(p) for p in err.value.problems), (definition, err.value)


# -- resume inside the crew
async def test_a_failed_attempt_resumes_after_the_finished_tasks(
        store: Store, servers: tuple[FakeOpenAIServer, FakeOpenAIServer],
        capfd: pytest.CaptureFixture[str]) -> None:
    local, hosted = servers
    # plan answers, research's call is refused (400: the router does not fall back): the
    # attempt fails after plan was checkpointed, and the retry runs only research and write.
    local.script(Behaviour(), Behaviour(kind="fail", status=400))
    execution_id = uuid.uuid4().hex
    async with MultiAgentExecutor(store) as ex:
        result = await ex.execute(execution_id, workflow(
            crew("writer", "plan_research_write"), topic="rates"))
    assert result.status == "completed", result.error
    failed = [e.data for e in await store.get_events(execution_id)
              if e.type == "failure_detected"]
    assert [(f["attempt"], "400" in f["error"]) for f in failed] == [(1, True)]
    out = result.results["writer"]
    assert [t["name"] for t in out["tasks"]] == ["plan", "research", "write"]
    assert [task_of(r) for r in local.requests] == ["plan", "research", "research", "write"]
    assert out["tasks"][0]["raw"] in local.requests[2]["messages"][-1]["content"]  # context
    assert hosted.count == 0
    cps = await store.list_graph_checkpoints(thread_id=f"{execution_id}:writer:crewai")
    assert json.loads(cps[0].checkpoint) == {"done": True, "output": out}
    # CrewAI's console (its event bus warns on stdout when a call fails) is kept off stdout.
    assert capfd.readouterr().out == ""


async def test_a_finished_crew_is_not_run_again(
        sqlite_store: Store, servers: tuple[FakeOpenAIServer, FakeOpenAIServer]) -> None:
    local, _ = servers
    wf = workflow(crew("credit_crew", "research_and_pydantic_verdict"))
    async with MultiAgentExecutor(sqlite_store) as ex:
        first = await ex.execute("again-1", wf)
    assert first.status == "completed", first.error
    # Omium's own checkpoint lost after the crew finished: the next run gives its output back.
    agent = CrewAIAgent(prepare(wf).workflow.agents[0])
    with lend(AgentRuntime(sqlite_store)):
        again = await agent.run(wf["inputs"], AgentContext(
            "again-1", "credit_crew", 1, llm_base_url="http://127.0.0.1:9/v1",
            llm_api_key="unused", llm_model="smollm2"))  # a crew made, never run
    assert again == first.results["credit_crew"]
    assert local.count == 2


# Runs the CLI recording every host it connects to or looks up (Python's audit events).
_AUDITED = """
import json, os, sys
def _audit(event, args):
    if event == 'socket.connect':
        addr = args[1]
        host = addr[0] if isinstance(addr, tuple) else 'unix:' + str(addr)
    elif event == 'socket.getaddrinfo':
        host = str(args[0])
    else:
        return
    with open(os.environ['OMIUM_TEST_PEERS'], 'a') as f:
        f.write(json.dumps(host) + '\\n')
sys.addaudithook(_audit)
from omium.cli import main
sys.argv[0] = 'omium'
main()
"""
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def _omium(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", _AUDITED, *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


async def test_sigkill_after_the_first_task_then_resume_runs_no_finished_task_again(
        tmp_path: Path, database_url: str,
        servers: tuple[FakeOpenAIServer, FakeOpenAIServer]) -> None:
    local, hosted = servers
    wf = tmp_path / "wf.yaml"
    wf.write_text(yaml.safe_dump(workflow(crew("writer", "plan_research_write"),
                                          topic="rates")))
    peers = tmp_path / "peers.jsonl"
    env = {**os.environ, "OMIUM_DATABASE_URL": database_url, "OMIUM_TEST_PEERS": str(peers)}
    local.script(Behaviour(), Behaviour(kind="stall", stall_s=300))  # research hangs
    proc = _omium("run", str(wf), "--execution-id", "victim", "--json", env=env)
    deadline = time.monotonic() + 90
    while local.count < 2 and time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        await asyncio.sleep(0.05)
    proc.send_signal(signal.SIGKILL)  # plan is done, research is in flight
    await asyncio.to_thread(proc.wait)
    assert proc.returncode == -signal.SIGKILL
    async with open_store(database_url) as store:
        assert await store.get_checkpoints("victim") == []  # the agent itself did not finish
        saved = await store.get_graph_checkpoint("victim:writer:crewai", "crewai")
    assert saved is not None
    assert [t["name"] for t in json.loads(saved.checkpoint)["tasks"]] == ["plan"]

    resumed = _omium("resume", "victim", "--json", env=env)
    stdout, stderr = await asyncio.to_thread(resumed.communicate, timeout=180)
    assert resumed.returncode == 0, stderr
    result = json.loads(stdout)
    assert result["status"] == "completed"
    out = result["output"]
    assert [t["name"] for t in out["tasks"]] == ["plan", "research", "write"]
    # plan finished before the kill: asked once. research was in flight: asked again.
    assert [task_of(r) for r in local.requests] == ["plan", "research", "research", "write"]
    plan = out["tasks"][0]["raw"]
    assert plan in local.requests[2]["messages"][-1]["content"]  # given back as context
    assert hosted.count == 0
    # Billed: the three answered calls (the one the kill cut off was never answered).
    async with open_store(database_url) as store:
        records = await store.usage_records(execution_id="victim")
    assert [(r.agent_id, r.cost_nano) for r in records] == [("writer", LOCAL_CALL_NANO)] * 3
    # CrewAI's telemetry, tracing and version check are off: every peer is on loopback.
    hosts = {json.loads(line) for line in peers.read_text().splitlines()}
    assert hosts and all(h in _LOOPBACK or h.startswith("unix:") for h in hosts), hosts


# -- without CrewAI
def test_without_crewai_validate_and_run_are_bad_input_naming_the_agent(
        tmp_path: Path) -> None:
    cli_refuses(tmp_path, "crewai", workflow(crew("kyc_agent", "one_task")), "kyc_agent",
                "crewai")


async def test_without_crewai_the_api_answers_422_naming_the_agent(
        api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    await api_refuses(api, monkeypatch, "crewai", workflow(crew("kyc_agent", "one_task")),
                      "kyc_agent", "crewai")
