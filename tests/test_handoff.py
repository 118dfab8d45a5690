"""The handoff protocol: schema check, acks, majority, persistence; and through the executor."""

from __future__ import annotations

import asyncio
from typing import Any

import jsonschema
import pytest

from omium.agents.base import AgentContext
from omium.agents.python import PythonAgent
from omium.coordination.handoff import HandoffProtocol
from omium.engine.executor import MultiAgentExecutor
from omium.errors import HandoffValidationError
from omium.workflow.model import AgentSpec

SCHEMA = {"type": "object", "required": ["risk_score"],
          "properties": {"risk_score": {"type": "number", "minimum": 0, "maximum": 1}}}
ECHO = "tests.agents_for_tests:echo"


async def slow_accept(data: Any, ctx: AgentContext) -> bool:
    await asyncio.sleep(0.2)
    return True


def receiver(agent_id: str, accept: str | None = None) -> PythonAgent:
    definition = {"callable": ECHO, **({"accept": accept} if accept else {})}
    return PythonAgent(AgentSpec(id=agent_id, definition=definition))


def receivers(*refusing: str, accept: str = "tests.agents_for_tests:refuse"
              ) -> dict[str, PythonAgent]:
    return {a: receiver(a, accept if a in refusing else None) for a in ("r1", "r2", "r3")}


async def test_valid_data_to_receivers_known_by_id() -> None:
    result = await HandoffProtocol().initiate_handoff(
        "e1", "scorer", ["r1", "r2"], {"risk_score": 0.3}, SCHEMA)
    assert result.status == "success" and result.ok
    assert result.agents_applied == 2
    assert result.acks == {"r1": True, "r2": True}
    assert result.delivered == {"r1": {"risk_score": 0.3}, "r2": {"risk_score": 0.3}}


async def test_invalid_data_raises_with_json_path() -> None:
    with pytest.raises(HandoffValidationError) as info:
        await HandoffProtocol().initiate_handoff(
            "e1", "scorer", ["r1"], {"risk_score": 7}, SCHEMA)
    err = info.value
    assert isinstance(err, jsonschema.ValidationError)
    assert err.json_path == "$.risk_score"
    assert err.receiver == "r1"
    assert "$.risk_score" in str(err)


async def test_invalid_data_is_a_jsonschema_validation_error() -> None:
    with pytest.raises(jsonschema.ValidationError):
        await HandoffProtocol().initiate_handoff("e1", "scorer", ["r1"], {}, SCHEMA)


async def test_one_refusal_of_three_is_still_a_majority() -> None:
    protocol = HandoffProtocol(receivers=receivers("r2"))
    result = await protocol.initiate_handoff("e1", "scorer", ["r1", "r2", "r3"], {"x": 1})
    assert result.status == "success"
    assert result.acks == {"r1": True, "r2": False, "r3": True}
    assert result.reasons["r2"] == "not today"
    assert result.agents_applied == 3  # the majority decided: every receiver gets the data


async def test_two_refusals_of_three_fail() -> None:
    protocol = HandoffProtocol(receivers=receivers("r1", "r3"))
    result = await protocol.initiate_handoff("e1", "scorer", ["r1", "r2", "r3"], {"x": 1})
    assert (result.status, result.reason) == ("failed", "no_consensus")
    assert result.agents_applied == 0 and result.delivered == {}
    assert result.reasons == {"r1": "not today", "r2": None, "r3": "not today"}


async def test_slow_ack_counts_as_refusal() -> None:
    protocol = HandoffProtocol(timeout_s=0.02,
                               receivers=receivers("r1", accept="tests.test_handoff:slow_accept"))
    result = await protocol.initiate_handoff("e1", "scorer", ["r1", "r2", "r3"], {"x": 1})
    assert result.status == "success"
    assert result.acks["r1"] is False
    assert "0.02s" in (result.reasons["r1"] or "")


async def test_every_handoff_is_persisted(store: Any) -> None:
    protocol = HandoffProtocol(store, receivers=receivers("r1", "r3"))
    ok = await protocol.initiate_handoff("e1", "a", ["r2"], {"risk_score": 0.5}, SCHEMA)
    refused = await protocol.initiate_handoff("e1", "a", ["r1", "r2", "r3"], {"x": 1})
    with pytest.raises(HandoffValidationError):
        await protocol.initiate_handoff("e1", "a", ["r2"], {"risk_score": 2}, SCHEMA)
    await protocol.initiate_handoff("other", "a", ["r2"], {"x": 1})

    rows = await store.get_handoffs("e1")
    assert [(r.status, r.reason, r.to_agents) for r in rows] == [
        ("success", None, ["r2"]),
        ("failed", "no_consensus", ["r1", "r2", "r3"]),
        ("failed", "validation_error", ["r2"]),
    ]
    assert rows[0].acks == {"r2": {"ack": True, "reason": None}}
    assert rows[1].acks == {"r1": {"ack": False, "reason": "not today"},
                               "r2": {"ack": True, "reason": None},
                               "r3": {"ack": False, "reason": "not today"}}
    assert "$.risk_score" in rows[2].error
    assert rows[0].latency_ms == pytest.approx(ok.latency_ms)
    assert rows[1].latency_ms == pytest.approx(refused.latency_ms)
    assert all(r.latency_ms > 0 and r.from_agent == "a" for r in rows)


async def test_no_store_writes_when_persist_is_false(store: Any) -> None:
    protocol = HandoffProtocol(store)
    await protocol.initiate_handoff("e1", "a", ["r1"], {"x": 1}, persist=False)
    assert await store.get_handoffs("e1") == []


def sequential(second: dict[str, Any]) -> dict[str, Any]:
    return {"name": "handoff", "agents": [
        {"id": "scorer", "definition": {"callable": "tests.agents_for_tests:bad_output"}},
        {"id": "decider", "retry": {"max_attempts": 1}, **second},
    ]}


async def test_invalid_handoff_fails_before_the_receiver_runs(sqlite_store: Any) -> None:
    events: list[tuple[str, str | None]] = []
    ex = MultiAgentExecutor(store=sqlite_store, on_event=lambda k, a, d: events.append((k, a)))
    wf = sequential({"definition": {"callable": ECHO}, "input_schema": SCHEMA})
    r = await ex.execute("e1", wf, {})
    assert (r.status, r.failure_type, r.failed_agent) == ("failed", "validation_error", "decider")
    assert "$.risk_score" in (r.error or "")
    assert ("agent_started", "decider") not in events
    assert [c.agent_id for c in await sqlite_store.get_checkpoints("e1")] == ["scorer"]
    [h] = await sqlite_store.get_handoffs("e1")
    assert (h.from_agent, h.to_agents, h.status, h.reason) == (
        "scorer", ["decider"], "failed", "validation_error")
    stored = await sqlite_store.get_execution("e1")
    assert (stored.status, stored.failed_agent) == ("failed", "decider")


async def test_refused_handoff_fails_the_receiver(sqlite_store: Any) -> None:
    ex = MultiAgentExecutor(store=sqlite_store)
    wf = sequential({"definition": {"callable": ECHO,
                                    "accept": "tests.agents_for_tests:refuse"}})
    r = await ex.execute("e1", wf, {})
    assert (r.status, r.failure_type, r.failed_agent) == ("failed", "no_consensus", "decider")
    [h] = await sqlite_store.get_handoffs("e1")
    assert h.status == "failed"
    assert h.acks == {"decider": {"ack": False, "reason": "not today"}}


async def test_accepted_handoff_is_stored_with_the_checkpoint(sqlite_store: Any) -> None:
    ex = MultiAgentExecutor(store=sqlite_store)
    r = await ex.execute("e1", sequential({"definition": {"callable": ECHO}}), {})
    assert r.status == "completed"
    assert r.output == {"agent": "decider", "seen": {"risk_score": 7}}
    [h] = await sqlite_store.get_handoffs("e1")
    assert (h.status, h.acks) == ("success", {"decider": {"ack": True, "reason": None}})
