"""The ``llm`` agent kind end to end: templated prompts, JSON output, retries, billing."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml

from omium import MultiAgentExecutor, WorkflowValidationError, prepare
from omium.agents.llm import parse_json_reply, render
from omium.billing import Ledger
from omium.errors import AgentError, OutputValidationError
from omium.llm import LLMRouter, parse_config
from omium.store.base import Store
from omium.testing.fake_server import FakeOpenAIServer

REPLY = '#reply={"decision":"approve","reason":"stable_income"}'
SCHEMA = {"type": "object", "required": ["decision", "reason"],
          "properties": {"decision": {"enum": ["approve", "reject"]}}}


@pytest.fixture
async def server() -> AsyncIterator[FakeOpenAIServer]:
    async with FakeOpenAIServer(model="smollm2") as s:
        yield s


def llm_agent(prompt: str, **definition: object) -> dict:
    return {"id": "underwriter", "framework": "llm",
            "definition": {"prompt": prompt, "system": "You underwrite loans.", **definition},
            "retry": {"max_attempts": 2, "backoff_s": 0}}


def workflow(agent: dict) -> dict:
    return {"name": "llm_flow", "inputs": {"applicant": {"name": "Ada", "income": 90000}},
            "agents": [agent]}


async def test_llm_agent_parses_json_and_bills_the_execution(sqlite_store: Store,
                                                             server: FakeOpenAIServer) -> None:
    cfg = parse_config({"backends": [{"name": "local", "base_url": server.base_url,
                                      "model": "smollm2"}]})
    router = LLMRouter(cfg, ledger=Ledger(sqlite_store))
    agent = llm_agent("Decide on {{ applicant.name }} earning {{ applicant.income }} "
                      f"#usage=40/12 {REPLY}", output_schema=SCHEMA)
    async with MultiAgentExecutor(sqlite_store, router=router) as ex:
        result = await ex.execute("llm-1", workflow(agent))
    await router.aclose()
    assert result.status == "completed"
    assert result.results["underwriter"] == {"decision": "approve", "reason": "stable_income"}
    sent = server.requests[0]["messages"]
    assert sent[0]["role"] == "system" and "JSON Schema" in sent[0]["content"]
    assert sent[1]["content"].startswith("Decide on Ada earning 90000")
    [record] = await sqlite_store.usage_records(execution_id="llm-1")
    assert (record.agent_id, record.tenant_id, record.prompt_tokens,
            record.completion_tokens) == ("underwriter", "local", 40, 12)
    assert record.idempotency_key.startswith("llm-1:underwriter:1:")


async def test_a_reply_that_is_not_valid_json_is_retried_then_fails(
        sqlite_store: Store, server: FakeOpenAIServer) -> None:
    cfg = parse_config({"backends": [{"name": "local", "base_url": server.base_url,
                                      "model": "smollm2"}]})
    router = LLMRouter(cfg, ledger=Ledger(sqlite_store))
    agent = llm_agent("Decide #reply=definitely_approve", output_schema=SCHEMA)
    async with MultiAgentExecutor(sqlite_store, router=router) as ex:
        result = await ex.execute("llm-2", workflow(agent))
    await router.aclose()
    assert (result.status, result.failure_type) == ("failed", "validation_error")
    assert "definitely_approve" in (result.error or "")  # the reply is attached
    assert server.count == 2  # retried once
    assert len(await sqlite_store.usage_records(execution_id="llm-2")) == 2  # both billed


async def test_backends_from_the_config_file_and_llm_errors(
        sqlite_store: Store, server: FakeOpenAIServer, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "omium-llm.yaml"
    path.write_text(yaml.safe_dump({"backends": [
        {"name": "local", "base_url": server.base_url, "model": "smollm2"}]}))
    monkeypatch.setenv("OMIUM_LLM_CONFIG", str(path))
    async with MultiAgentExecutor(sqlite_store) as ex:
        ok = await ex.execute("llm-3", workflow(llm_agent("Say hi #reply=hi")))
        server.default.kind = "fail"
        down = await ex.execute("llm-4", workflow(llm_agent("Say hi")))
    assert ok.results["underwriter"]["text"] == "hi"
    assert (down.status, down.failure_type) == ("failed", "llm_error")
    assert "all LLM backends failed" in (down.error or "")


def test_definition_is_checked_before_running() -> None:
    with pytest.raises(WorkflowValidationError) as err:
        prepare(workflow({"id": "x", "framework": "llm",
                          "definition": {"temperature": 5, "max_tokens": 0, "tools": []}}))
    text = str(err.value)
    for where in ("definition.prompt", "definition.temperature", "definition.max_tokens",
                  "unknown keys ['tools']"):
        assert where in text


def test_templates_and_reply_parsing() -> None:
    inputs = {"a": {"b": [10, {"c": "deep"}]}, "n": 3}
    assert render("{{ a.b.1.c }} / {{n}} / {{ a.b }}", inputs) == "deep / 3 / [10, {\"c\": " \
        "\"deep\"}]"
    assert json.loads(render("{{ inputs }}", inputs)) == inputs
    with pytest.raises(AgentError, match=r"no 'a\.zzz'"):
        render("{{ a.zzz }}", inputs)
    assert parse_json_reply('```json\n{"x": 1}\n```') == {"x": 1}
    assert parse_json_reply('Sure! {"x": 2} hope that helps') == {"x": 2}
    with pytest.raises(OutputValidationError):
        parse_json_reply("no json here")
