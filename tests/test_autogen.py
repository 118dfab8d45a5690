"""``framework: autogen`` with the real autogen-agentchat package: a team's model client on the
endpoint Omium lends it (the CLI run's in-process gateway, the fake OpenAI server behind it),
billed to the execution and agent; its state checkpointed after each turn and loaded on resume;
the missing-extra message."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

pytest.importorskip("autogen_agentchat")

from omium import MultiAgentExecutor
from omium.engine.graph import prepare
from omium.errors import WorkflowValidationError
from omium.store.base import Store
from omium.testing.fake_server import FakeOpenAIServer
from tests import autogen_teams
from tests._api_harness import V1, Api
from tests._gateway_util import LOCAL_CALL_NANO, write_llm_config
from tests._processes import ROOT

TEAMS = "tests.autogen_teams"


def ag(agent_id: str, factory: str, **definition: Any) -> dict[str, Any]:
    return {"id": agent_id, "framework": "autogen",
            "definition": {"team": f"{TEAMS}:{factory}", **definition},
            "retry": {"max_attempts": 2, "backoff_s": 0}}


def workflow(*agents: dict[str, Any]) -> dict[str, Any]:
    return {"name": "ag", "inputs": {"applicant": {"name": "Ada"}}, "agents": list(agents)}


@pytest.fixture
async def servers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                  ) -> AsyncIterator[tuple[FakeOpenAIServer, FakeOpenAIServer]]:
    async with FakeOpenAIServer(model="smollm2") as local, \
            FakeOpenAIServer(model="gpt-3.5-turbo") as hosted:
        monkeypatch.setenv("OMIUM_LLM_CONFIG", str(write_llm_config(
            tmp_path / "omium-llm.yaml", local, hosted)))
        yield local, hosted


@pytest.mark.parametrize("factory", ["analyst", "analyst_team"])
async def test_a_one_agent_team_answers_through_the_gateway_billed_as_the_server_reported(
        store: Store, servers: tuple[FakeOpenAIServer, FakeOpenAIServer], factory: str) -> None:
    local, hosted = servers
    execution_id = uuid.uuid4().hex
    async with MultiAgentExecutor(store) as ex:
        result = await ex.execute(execution_id, workflow(ag(
            "kyc_agent", factory, task="assess {{ applicant.name }} #usage=120/30")))
    assert result.status == "completed", result.error
    out = result.results["kyc_agent"]
    assert out["final"] == "echo: assess Ada"
    assert out["messages"] == [
        {"source": "user", "content": "assess Ada #usage=120/30"},
        {"source": "analyst", "content": "echo: assess Ada"}]
    assert out["stop_reason"]
    [request] = local.requests
    assert request["messages"][-1]["content"] == "assess Ada #usage=120/30"
    assert (local.count, hosted.count) == (1, 0)
    [record] = await store.usage_records(execution_id=execution_id)
    assert (record.agent_id, record.backend, record.prompt_tokens, record.completion_tokens,
            record.cost_nano, record.estimated) == (
        "kyc_agent", "local", 120, 30, LOCAL_CALL_NANO, False)


async def test_without_a_task_template_the_task_is_the_input_as_json(
        sqlite_store: Store, servers: tuple[FakeOpenAIServer, FakeOpenAIServer]) -> None:
    local, _ = servers
    async with MultiAgentExecutor(sqlite_store) as ex:
        result = await ex.execute("json-1", workflow(ag("kyc_agent", "analyst")))
    assert result.status == "completed", result.error
    task = json.dumps({"applicant": {"name": "Ada"}})
    assert result.results["kyc_agent"]["messages"][0] == {"source": "user", "content": task}
    assert local.requests[0]["messages"][-1]["content"] == task


async def test_a_failed_turn_resumes_from_the_saved_state_without_asking_again(
        store: Store, servers: tuple[FakeOpenAIServer, FakeOpenAIServer],
        monkeypatch: pytest.MonkeyPatch) -> None:
    local, _ = servers
    monkeypatch.setitem(autogen_teams.CRITIC, "fail", 1)
    monkeypatch.setitem(autogen_teams.CRITIC, "calls", 0)
    monkeypatch.setitem(autogen_teams.CRITIC, "seen", [])
    execution_id = uuid.uuid4().hex
    async with MultiAgentExecutor(store) as ex:
        result = await ex.execute(execution_id, workflow(ag(
            "writer_team", "writer_and_critic", task="draft for {{ applicant.name }}")))
    assert result.status == "completed", result.error
    out = result.results["writer_team"]
    assert out["messages"] == [
        {"source": "user", "content": "draft for Ada"},
        {"source": "writer", "content": "echo: draft for Ada"},
        {"source": "critic", "content": "approved"}]
    assert out["final"] == "approved"
    assert "Maximum number of messages 3 reached" in out["stop_reason"]
    # The writer's turn was asked once: the retry loaded the state saved after it.
    assert local.count == 1
    # The critic ran twice (failed, then resumed), given the conversation each time.
    assert autogen_teams.CRITIC["calls"] == 2
    assert autogen_teams.CRITIC["seen"] == [["user", "writer"], ["user", "writer"]]
    cps = await store.list_graph_checkpoints(thread_id=f"{execution_id}:writer_team:autogen")
    assert cps, "the team's state is checkpointed on the agent's thread"
    newest = json.loads(cps[0].checkpoint)
    assert newest["done"] is True and newest["output"] == out
    [record] = await store.usage_records(execution_id=execution_id)
    assert (record.agent_id, record.cost_nano) == ("writer_team", LOCAL_CALL_NANO)


async def test_a_finished_team_is_not_run_again(
        sqlite_store: Store, servers: tuple[FakeOpenAIServer, FakeOpenAIServer]) -> None:
    local, _ = servers
    wf = workflow(ag("kyc_agent", "analyst", task="assess {{ applicant.name }}"))
    async with MultiAgentExecutor(sqlite_store) as ex:
        first = await ex.execute("again-1", wf)
    # Omium's own checkpoint lost after the team finished: the next run gives its output back.
    from omium.agents.base import AgentContext
    from omium.agents.runtime import AgentRuntime, lend
    from omium.contrib.autogen import AutoGenAgent

    agent = AutoGenAgent(prepare(wf).workflow.agents[0])
    with lend(AgentRuntime(sqlite_store)):
        again = await agent.run({"applicant": {"name": "Ada"}}, AgentContext(
            "again-1", "kyc_agent", 1, llm_base_url="http://127.0.0.1:9/v1",
            llm_api_key="unused", llm_model="smollm2"))  # a client made, never called
    assert again == first.results["kyc_agent"]
    assert local.count == 1


def test_bad_definitions_are_refused_before_anything_runs() -> None:
    for definition, where in [({}, "definition.team"),
                              ({"team": f"{TEAMS}:analyst", "extra": 1}, "definition"),
                              ({"team": f"{TEAMS}:analyst", "task": 3}, "definition.task"),
                              ({"team": f"{TEAMS}:MODEL_INFO"}, "definition.team"),
                              ({"team": "tests.no_such_module:team"}, "definition.team")]:
        with pytest.raises(WorkflowValidationError) as err:
            prepare({"name": "bad", "agents": [{"id": "a", "framework": "autogen",
                                                "definition": definition}]})
        assert any(where in str(p) for p in err.value.problems), (definition, err.value)


_NO_AUTOGEN = ("import sys; sys.modules['autogen_agentchat'] = None; "
               "from omium.cli import main; sys.argv[0] = 'omium'; main()")


def test_without_autogen_validate_and_run_are_bad_input_naming_the_agent(
        tmp_path: Path) -> None:
    wf = tmp_path / "wf.yaml"
    wf.write_text(yaml.safe_dump(workflow(ag("kyc_agent", "analyst"))))
    env = {**os.environ, "PYTHONPATH": str(ROOT),
           "OMIUM_DATABASE_URL": f"sqlite:///{tmp_path / 'o.db'}"}
    for command in (["validate", str(wf)], ["run", str(wf)]):
        p = subprocess.run([sys.executable, "-c", _NO_AUTOGEN, *command], cwd=tmp_path,
                           env=env, capture_output=True, text=True, timeout=60)
        assert p.returncode == 2, p.stdout + p.stderr
        assert "Traceback" not in p.stderr
        assert "agents[0] (kyc_agent).framework" in p.stderr
        assert "pip install 'omium[autogen]'" in p.stderr


async def test_without_autogen_the_api_answers_422_naming_the_agent(
        api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules
                 if m == "autogen_agentchat" or m.startswith("autogen_agentchat.")]:
        monkeypatch.setitem(sys.modules, name, None)
    _, h = await api.tenant("acme")
    r = await api.client.post(f"{V1}/executions", headers=h, json={
        "workflow": workflow(ag("kyc_agent", "analyst"))})
    assert r.status_code == 422, r.text
    [problem] = r.json()["detail"]
    assert problem["loc"] == "agents[0] (kyc_agent).framework"
    assert "pip install 'omium[autogen]'" in problem["msg"]
