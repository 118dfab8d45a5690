"""The plan's multi-agent tests across frameworks, through the real ``omium run``: a CrewAI
crew (``kyc_agent``) handing off to a LangGraph graph (``fraud_agent``), validated against the
receiver's JSON Schema as the plan's workflow does; and a LangGraph graph, a CrewAI crew and an
AutoGen team voting in parallel (unanimous: all agree -> approve, else manual review).

Every framework's model client is built on the endpoint Omium lends its agent, so each call
goes through the CLI run's gateway to the project's fake OpenAI server (one hosted backend,
priced per token) and is billed to the execution and agent: the tests check each agent's
usage records against what the server reported, to the nano-dollar.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

pytest.importorskip("langgraph")
pytest.importorskip("langchain_openai")
pytest.importorskip("autogen_agentchat")

from omium.store import open_store
from omium.store.records import UsageRecord
from omium.testing.fake_server import Behaviour, FakeOpenAIServer
from tests._cli_process import Ran, omium_cli
from tests._gateway_util import hosted_nano

AGENTS = "tests.mixed_agents"
MODEL = "gpt-3.5-turbo"  # priced per token by default: a bill shows every token


def _crewai_missing() -> str | None:
    try:  # importing is the check: the adapter imports crewai lazily
        importlib.import_module("crewai")
        importlib.import_module("omium.contrib.crewai")
    except ImportError as err:
        return (f"framework: crewai is not available here ({err}): the crewai adapter "
                "(src/omium/contrib/crewai) and `pip install 'omium[crewai]'` are needed")
    return None


needs_crewai = pytest.mark.skipif(_crewai_missing() is not None,
                                  reason=_crewai_missing() or "")


@pytest.fixture
async def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
               ) -> AsyncIterator[FakeOpenAIServer]:
    """The fake OpenAI server as the run's one backend (``omium run`` reads the config)."""
    async with FakeOpenAIServer(model=MODEL) as server:
        config = tmp_path / "omium-llm.yaml"
        config.write_text(yaml.safe_dump({"backends": [
            {"name": "openai", "base_url": server.base_url, "model": MODEL, "kind": "hosted"}]}))
        monkeypatch.setenv("OMIUM_LLM_CONFIG", str(config))
        yield server


async def omium_run(tmp_path: Path, database_url: str, workflow: dict[str, Any]
                    ) -> tuple[Ran, dict[str, Any], list[UsageRecord]]:
    """``omium run WORKFLOW --json`` in a subprocess (the fake server answers from this
    loop meanwhile): the exit, the result, and the execution's usage records."""
    path = tmp_path / f"{workflow['name']}.yaml"
    path.write_text(yaml.safe_dump(workflow))
    execution_id = f"mixed-{uuid.uuid4().hex[:12]}"
    ran = await asyncio.to_thread(omium_cli, "run", path, "--json", "--execution-id",
                                  execution_id, "--db", database_url, timeout=240)
    result = json.loads(ran.out) if ran.out.strip() else {}
    async with open_store(database_url) as store:
        records = await store.usage_records(execution_id=execution_id)
    return ran, result, records


def billed(records: list[UsageRecord], agent_id: str) -> list[tuple[str, int, int, int]]:
    """``(backend, prompt, completion, cost_nano)`` of each of an agent's calls."""
    return [(r.backend, r.prompt_tokens, r.completion_tokens, r.cost_nano)
            for r in records if r.agent_id == agent_id]


def asked(server: FakeOpenAIServer, marker: str) -> list[dict[str, Any]]:
    """The requests the fake server got whose last message holds ``marker``."""
    def last(body: dict[str, Any]) -> str:
        content = body["messages"][-1].get("content")
        return content if isinstance(content, str) else json.dumps(content)

    return [b for b in server.requests if marker in last(b)]


# -- sequential: CrewAI's KYC hands off to LangGraph's fraud check -----------------------------

# The plan's handoff schema: what the fraud agent accepts from KYC.
KYC_HANDOFF = {"type": "object", "required": ["customer_verified", "risk_score"],
               "properties": {"customer_verified": {"type": "boolean"},
                              "risk_score": {"type": "number", "minimum": 0, "maximum": 1}}}


def kyc_then_fraud() -> dict[str, Any]:
    return {"name": "kyc_then_fraud", "execution_order": "sequential",
            "inputs": {"applicant": {"name": "Ada Lovelace", "national_id": "79927398713"}},
            "agents": [
                {"id": "kyc_agent", "framework": "crewai",
                 "definition": {"crew": f"{AGENTS}:kyc_crew"}},
                {"id": "fraud_agent", "framework": "langgraph",
                 "definition": {"graph": f"{AGENTS}:fraud_graph"},
                 "input_schema": KYC_HANDOFF}]}


@needs_crewai
async def test_a_crewai_crew_hands_off_to_a_langgraph_graph_each_billed_as_reported(
        tmp_path: Path, database_url: str, fake: FakeOpenAIServer) -> None:
    fake.script(Behaviour(reply='{"customer_verified": true, "risk_score": 0.3}',
                          prompt_tokens=210, completion_tokens=17),
                Behaviour(reply="approve", prompt_tokens=36, completion_tokens=1))
    ran, result, records = await omium_run(tmp_path, database_url, kyc_then_fraud())
    assert ran.code == 0, ran.text
    assert result["status"] == "completed"
    kyc, fraud = result["results"]["kyc_agent"], result["results"]["fraud_agent"]
    # The crew's last task output (its pydantic model) and its tasks' raw answers.
    assert (kyc["customer_verified"], kyc["risk_score"]) == (True, 0.3)
    assert [json.loads(t["raw"]) for t in kyc["tasks"]] == [
        {"customer_verified": True, "risk_score": 0.3}]
    # The graph started from what the crew handed over.
    assert (fraud["customer_verified"], fraud["risk_score"], fraud["decision"]) == (
        True, 0.3, "approve")
    [graph_call] = asked(fake, "KYC risk score: 0.3")
    assert graph_call["model"] == MODEL
    # One call each, through the gateway (only it writes usage), billed as the server said.
    assert fake.count == 2
    assert billed(records, "kyc_agent") == [("openai", 210, 17, hosted_nano(210, 17))]
    assert billed(records, "fraud_agent") == [("openai", 36, 1, hosted_nano(36, 1))]
    assert result["usage"]["calls"] == 2


@needs_crewai
async def test_a_crew_handoff_that_breaks_the_graphs_schema_stops_before_the_graph_runs(
        tmp_path: Path, database_url: str, fake: FakeOpenAIServer) -> None:
    fake.script(Behaviour(reply='{"customer_verified": true, "risk_score": 1.5}',
                          prompt_tokens=200, completion_tokens=17))
    ran, result, records = await omium_run(tmp_path, database_url, kyc_then_fraud())
    assert ran.code == 1, ran.text
    assert (result["status"], result["failed_agent"], result["failure_type"]) == (
        "failed", "fraud_agent", "validation_error")
    assert "$.risk_score" in result["error"]
    assert fake.count == 1  # the graph was never asked
    assert billed(records, "kyc_agent") == [("openai", 200, 17, hosted_nano(200, 17))]
    assert billed(records, "fraud_agent") == []


# -- parallel: one reviewer per framework, a unanimous vote ------------------------------------

def reviewers(briefs: dict[str, str]) -> dict[str, Any]:
    """Three reviewers voting on ``final`` (the field AutoGen's output carries its last
    message in; the graph and the crew answer in the same field)."""
    return {"name": "three_frameworks_vote", "execution_order": "parallel",
            "consensus": {"strategy": "unanimous", "field": "final",
                          "on_disagreement": "manual_review"},
            "inputs": {"applicant": {"name": "Grace Hopper", "requested_amount": 20000},
                       **briefs},
            "agents": [
                {"id": "langgraph_reviewer", "framework": "langgraph",
                 "definition": {"graph": f"{AGENTS}:reviewer_graph"}},
                {"id": "crewai_reviewer", "framework": "crewai",
                 "definition": {"crew": f"{AGENTS}:reviewer_crew"}},
                {"id": "autogen_reviewer", "framework": "autogen",
                 "definition": {"team": f"{AGENTS}:reviewer_team",
                                "task": "Review {{ applicant.name }}. {{ autogen_brief }}"}}]}


# What usage the fake server reports for each reviewer's call.
USAGE = {"langgraph": (40, 2), "crewai": (150, 6), "autogen": (30, 1)}


def briefs_for(votes: dict[str, str]) -> dict[str, str]:
    """Each reviewer's brief (``FRAMEWORK_brief``): the fake server's directives to answer
    its vote (the crew's task asks for its pydantic model: it answers JSON)."""
    def reply(framework: str, vote: str) -> str:
        return f'{{"final":"{vote}"}}' if framework == "crewai" else vote

    return {f"{fw}_brief": f"#reply={reply(fw, v)} #usage={USAGE[fw][0]}/{USAGE[fw][1]}"
            for fw, v in votes.items()}


def assert_each_reviewer_billed_as_reported(fake: FakeOpenAIServer,
                                            records: list[UsageRecord],
                                            briefs: dict[str, str]) -> None:
    for fw, (prompt, completion) in USAGE.items():
        agent_id = f"{fw}_reviewer"
        assert len(asked(fake, briefs[f"{fw}_brief"])) == 1, agent_id  # its one call arrived
        assert billed(records, agent_id) == [
            ("openai", prompt, completion, hosted_nano(prompt, completion))], agent_id
    assert fake.count == len(records) == 3


@needs_crewai
async def test_three_frameworks_that_agree_approve(
        tmp_path: Path, database_url: str, fake: FakeOpenAIServer) -> None:
    briefs = briefs_for({"langgraph": "approve", "crewai": "approve", "autogen": "approve"})
    ran, result, records = await omium_run(tmp_path, database_url, reviewers(briefs))
    assert ran.code == 0, ran.text
    assert result["status"] == "completed" and result["decision"] == "approve"
    consensus = result["consensus"]
    assert (consensus["outcome"], consensus["agreement_level"]) == ("approved", 1.0)
    assert consensus["votes"] == {"langgraph_reviewer": "approve",
                                  "crewai_reviewer": "approve", "autogen_reviewer": "approve"}
    # Each framework's own output shape, the vote read from the same field.
    assert result["results"]["autogen_reviewer"]["messages"][-1] == {
        "source": "reviewer", "content": "approve"}
    assert json.loads(result["results"]["crewai_reviewer"]["tasks"][0]["raw"]) == {
        "final": "approve"}
    assert_each_reviewer_billed_as_reported(fake, records, briefs)


@needs_crewai
async def test_three_frameworks_that_split_go_to_manual_review(
        tmp_path: Path, database_url: str, fake: FakeOpenAIServer) -> None:
    briefs = briefs_for({"langgraph": "approve", "crewai": "reject", "autogen": "approve"})
    ran, result, records = await omium_run(tmp_path, database_url, reviewers(briefs))
    assert ran.code == 3, ran.text  # awaiting review
    assert result["status"] == "awaiting_review"
    consensus = result["consensus"]
    assert consensus["outcome"] == "manual_review"
    assert consensus["agreement_level"] == pytest.approx(2 / 3, abs=1e-6)
    assert consensus["dissenters"] == ["crewai_reviewer"]
    assert_each_reviewer_billed_as_reported(fake, records, briefs)
