"""Framework agents in the service: a real ``omium serve`` (SQLite, in-process workers) runs
the plan's cross-framework workflows submitted over REST. Each agent's model client gets the
endpoint the serve lends its workers (its own ``/v1`` with an execution token, which
test_gateway_agents checks for a python agent), so each call is routed to the fake OpenAI server
and billed to the tenant, execution and agent to the nano-dollar; the execution detail a user
reads back lists each framework agent's usage."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

pytest.importorskip("langgraph")
pytest.importorskip("autogen_agentchat")

from omium.store import open_store
from omium.store.records import UsageRecord
from omium.testing.fake_server import Behaviour, FakeOpenAIServer
from tests._gateway_util import hosted_nano
from tests._serve_process import omium_serve
from tests.test_frameworks_mixed import (
    assert_each_reviewer_billed_as_reported,
    billed,
    briefs_for,
    fake,  # noqa: F401  (the fixture: the fake server as the serve's one backend)
    kyc_then_fraud,
    needs_crewai,
    reviewers,
)


async def _submit_and_wait(db: Path, workflow: dict[str, Any]
                           ) -> tuple[dict[str, Any], list[UsageRecord]]:
    """POST the workflow to a fresh ``omium serve`` on ``db`` with the tenant's key, wait
    until it leaves queued/running, and return its detail and its usage records."""
    async with omium_serve(db) as srv, httpx.AsyncClient(base_url=srv.base,
                                                          timeout=30) as http:
        auth = {"Authorization": f"Bearer {srv.key}"}
        posted = await http.post("/api/v1/executions", headers=auth,
                                 json={"workflow": workflow})
        assert posted.status_code == 202, posted.text
        execution_id = posted.json()["execution_id"]
        detail: dict[str, Any] = {}
        for _ in range(1200):  # frameworks import on first use: allow a minute
            detail = (await http.get(f"/api/v1/executions/{execution_id}",
                                     headers=auth)).json()
            if detail["status"] not in ("queued", "running"):
                break
            await asyncio.sleep(0.05)
    async with open_store(f"sqlite:///{db}") as store:
        records = await store.usage_records(execution_id=execution_id)
    return detail, records


@needs_crewai
async def test_a_served_crew_hands_off_to_a_served_graph_billed_through_the_serves_gateway(
        tmp_path: Path, fake: FakeOpenAIServer) -> None:  # noqa: F811
    fake.script(Behaviour(reply='{"customer_verified": true, "risk_score": 0.3}',
                          prompt_tokens=210, completion_tokens=17),
                Behaviour(reply="approve", prompt_tokens=36, completion_tokens=1))
    detail, records = await _submit_and_wait(tmp_path / "serve.db", kyc_then_fraud())
    assert detail["status"] == "completed", detail
    kyc = detail["result"]["results"]["kyc_agent"]
    fraud = detail["result"]["results"]["fraud_agent"]
    assert (kyc["customer_verified"], kyc["risk_score"]) == (True, 0.3)
    assert (fraud["risk_score"], fraud["decision"]) == (0.3, "approve")
    assert fake.count == 2
    # Billed to the serve's tenant ("local", whose key submitted it), per agent.
    assert {r.tenant_id for r in records} == {"local"}
    assert billed(records, "kyc_agent") == [("openai", 210, 17, hosted_nano(210, 17))]
    assert billed(records, "fraud_agent") == [("openai", 36, 1, hosted_nano(36, 1))]
    # What a user reads back: the detail's usage lists both framework agents' calls.
    usage = detail["usage"]
    assert usage["calls"] == 2
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (246, 18)
    assert sorted(r["agent_id"] for r in usage["records"]) == ["fraud_agent", "kyc_agent"]


@needs_crewai
async def test_three_served_frameworks_vote_and_each_is_billed_as_reported(
        tmp_path: Path, fake: FakeOpenAIServer) -> None:  # noqa: F811
    briefs = briefs_for({"langgraph": "approve", "crewai": "approve", "autogen": "approve"})
    detail, records = await _submit_and_wait(tmp_path / "serve.db", reviewers(briefs))
    assert detail["status"] == "completed", detail
    assert detail["decision"] == "approve"
    consensus = detail["result"]["consensus"]
    assert (consensus["outcome"], consensus["agreement_level"]) == ("approved", 1.0)
    assert json.loads(detail["result"]["results"]["crewai_reviewer"]["tasks"][0]["raw"]) == {
        "final": "approve"}
    assert_each_reviewer_billed_as_reported(fake, records, briefs)
