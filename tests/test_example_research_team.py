"""examples/research_team end to end, as its README runs it: ``omium run
examples/research_team/workflow.yaml`` with the fake OpenAI server as the local model (named
like SmolLM2), every call answered with the same verdict; the three teams (LangGraph, CrewAI,
AutoGen) each ask through the run's gateway, agree, and each call is billed to its agent."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml

pytest.importorskip("langgraph")
pytest.importorskip("langchain_openai")
pytest.importorskip("autogen_agentchat")
pytest.importorskip("crewai")

from examples.research_team.verdicts import read_verdict
from omium.store import open_store
from omium.testing.fake_server import Behaviour, FakeOpenAIServer
from tests._cli_process import omium_cli
from tests._gateway_util import LOCAL_CALL_NANO
from tests._processes import ROOT

WORKFLOW = ROOT / "examples" / "research_team" / "workflow.yaml"
SMOLLM2 = "HuggingFaceTB/SmolLM2-135M-Instruct"
VERDICT = '{"final": "supported", "reason": "Source 1 says readers and writers do not block."}'
# Calls each team makes: the graph's read and judge nodes, the crew's two tasks, the panel's
# advocate and skeptic (its clerk asks no model).
CALLS = {"graph_researcher": 2, "crew_analysts": 2, "autogen_panel": 2}


def _crewai_adapter() -> str | None:
    try:
        import omium.contrib.crewai._run  # noqa: F401
    except ImportError as err:
        return f"the crewai adapter (src/omium/contrib/crewai) is not complete here: {err}"
    return None


pytestmark = pytest.mark.skipif(_crewai_adapter() is not None, reason=_crewai_adapter() or "")


@pytest.fixture
async def smollm2(tmp_path: Path) -> AsyncIterator[tuple[FakeOpenAIServer, Path]]:
    """The fake server as the one (local, $0.001 a call) backend, answering VERDICT."""
    async with FakeOpenAIServer(model=SMOLLM2) as server:
        server.default = Behaviour(reply=VERDICT, prompt_tokens=90, completion_tokens=14)
        config = tmp_path / "omium-llm.yaml"
        config.write_text(yaml.safe_dump({"backends": [
            {"name": "local", "base_url": server.base_url, "model": SMOLLM2, "kind": "local"}]}))
        yield server, config


async def test_the_example_runs_end_to_end_and_the_three_frameworks_agree(
        tmp_path: Path, smollm2: tuple[FakeOpenAIServer, Path]) -> None:
    server, config = smollm2
    db = f"sqlite:///{tmp_path}/research.db"
    ran = await asyncio.to_thread(omium_cli, "run", WORKFLOW, "--json", "--execution-id",
                                  "research-1", "--db", db, env={"OMIUM_LLM_CONFIG": str(config)},
                                  timeout=240)
    assert ran.code == 0, ran.text
    result = json.loads(ran.out)
    assert result["status"] == "completed" and result["decision"] == "supported"
    consensus = result["consensus"]
    assert consensus["votes"] == {a: "supported" for a in CALLS}
    assert consensus["agreement_level"] == 1.0
    graph, crew, panel = (result["results"][a] for a in CALLS)
    assert (graph["final"], graph["notes"]) == ("supported", VERDICT)  # read, then judged
    assert crew["reason"] == json.loads(VERDICT)["reason"]
    assert crew["tasks"][0]["raw"] == VERDICT  # the evidence task's answer
    assert [m["source"] for m in panel["messages"]] == ["user", "advocate", "skeptic", "clerk"]
    # Every call reached the server through the run's gateway and was billed to its agent.
    async with open_store(db) as store:
        records = await store.usage_records(execution_id="research-1")
    for agent_id, calls in CALLS.items():
        mine = [(r.backend, r.model, r.prompt_tokens, r.completion_tokens, r.cost_nano)
                for r in records if r.agent_id == agent_id]
        assert mine == [("local", SMOLLM2, 90, 14, LOCAL_CALL_NANO)] * calls, agent_id
    assert server.count == len(records) == sum(CALLS.values())
    assert {r["model"] for r in server.requests} == {SMOLLM2}


@pytest.mark.parametrize(("reply", "final"), [
    ('{"final": "unsupported", "reason": "no"}', "unsupported"),
    ("Supported: source 1 says so.", "supported"),
    ("The claim is not supported.", "unsupported"),
    ("I cannot tell.", "undecided")])
def test_a_small_models_prose_is_read_as_a_vote(reply: str, final: str) -> None:
    assert read_verdict(reply)[0] == final
