"""``framework: autogen`` with the real autogen-agentchat package: a team's model client on the
endpoint Omium lends it (the CLI run's in-process gateway, the fake OpenAI server behind it),
billed to the execution and agent; its state checkpointed after each turn and loaded on resume;
the missing-extra message."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("autogen_agentchat")

from omium import MultiAgentExecutor
from omium.engine.graph import prepare
from omium.errors import WorkflowValidationError
from omium.store.base import Store
from omium.testing.fake_server import FakeOpenAIServer
from tests import autogen_teams
from tests._api_harness import Api
from tests._gateway_util import LOCAL_CALL_NANO, fake_backends
from tests._missing_extra import api_refuses, cli_refuses

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
    async with fake_backends(tmp_path, monkeypatch) as backends:
        yield backends


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


def test_without_autogen_validate_and_run_are_bad_input_naming_the_agent(
        tmp_path: Path) -> None:
    cli_refuses(tmp_path, "autogen_agentchat", workflow(ag("kyc_agent", "analyst")),
                "kyc_agent", "autogen")


async def test_without_autogen_the_api_answers_422_naming_the_agent(
        api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    await api_refuses(api, monkeypatch, "autogen_agentchat",
                      workflow(ag("kyc_agent", "analyst")), "kyc_agent", "autogen")
