"""Consensus: reducing parallel answers to one decision, directly and through the executor."""

from __future__ import annotations

from typing import Any

import pytest

from omium.coordination.consensus import decide
from omium.engine.executor import MultiAgentExecutor
from omium.errors import ExecutionStateError
from omium.workflow.model import ConsensusSpec

APPROVE = {"decision": "approve"}
REJECT = {"decision": "reject"}


def agent(agent_id: str, fn: str, **fields: Any) -> dict[str, Any]:
    return {"id": agent_id, "definition": {"callable": f"tests.agents_for_tests:{fn}"},
            "retry": {"max_attempts": 1}, **fields}


def parallel(*agents: dict[str, Any], **consensus: Any) -> dict[str, Any]:
    return {"name": "vote", "execution_order": "parallel", "agents": list(agents),
            "consensus": consensus or None}


# -- decide()

def test_majority_approves_above_threshold() -> None:
    r = decide({"a": APPROVE, "b": APPROVE, "c": REJECT}, {}, ConsensusSpec())
    assert (r.decision, r.outcome, r.agreement_level) == ("approve", "approved", 0.666667)
    assert r.dissenters == ["c"]
    assert r.votes == {"a": "approve", "b": "approve", "c": "reject"}


def test_majority_exactly_at_threshold_goes_to_review() -> None:
    outputs = {"a": APPROVE, "b": APPROVE, "c": REJECT, "d": {"decision": "defer"}}
    r = decide(outputs, {}, ConsensusSpec(threshold=0.5))
    assert (r.decision, r.agreement_level, r.outcome) == ("approve", 0.5, "manual_review")


def test_unanimous_all_agree() -> None:
    r = decide({"a": APPROVE, "b": APPROVE, "c": APPROVE}, {},
               ConsensusSpec(strategy="unanimous"))
    assert (r.decision, r.outcome, r.agreement_level, r.dissenters) == (
        "approve", "approved", 1.0, [])


def test_unanimous_split_names_the_dissenter() -> None:
    r = decide({"a": APPROVE, "b": REJECT, "c": APPROVE}, {},
               ConsensusSpec(strategy="unanimous"))
    assert r.outcome == "manual_review"
    assert r.dissenters == ["b"]


def test_failures_abstain_and_lower_agreement() -> None:
    r = decide({"a": APPROVE, "b": APPROVE}, {"c": "timeout: no result within 1s"},
               ConsensusSpec())
    assert r.decision == "approve" and r.outcome == "approved"
    assert r.agreement_level == pytest.approx(2 / 3, abs=1e-6)  # share of all three agents
    assert r.abstentions == {"c": "timeout: no result within 1s"}
    assert "c" not in r.votes and r.dissenters == []


def test_abstentions_can_break_a_unanimous_vote() -> None:
    r = decide({"a": APPROVE, "b": APPROVE}, {"c": "exception: boom"},
               ConsensusSpec(strategy="unanimous"))
    assert r.outcome == "manual_review"


def test_missing_field_is_an_abstention() -> None:
    r = decide({"a": APPROVE, "b": APPROVE, "c": {"score": 3}}, {},
               ConsensusSpec(field="decision"))
    assert r.decision == "approve"
    assert "c" in r.abstentions and "decision" in r.abstentions["c"]
    assert r.agreement_level == pytest.approx(2 / 3, abs=1e-6)


def test_no_spec_compares_decision_field_when_all_have_one() -> None:
    outputs = {"a": {"decision": "approve", "score": 1}, "b": {"decision": "approve", "score": 2}}
    r = decide(outputs, {})
    assert (r.field, r.decision, r.agreement_level) == ("decision", "approve", 1.0)


def test_no_spec_compares_whole_outputs_regardless_of_key_order() -> None:
    outputs = {"a": {"x": 1, "y": [1, 2]}, "b": {"y": [1, 2], "x": 1}, "c": {"x": 2}}
    r = decide(outputs, {})
    assert r.field is None
    assert r.decision == {"x": 1, "y": [1, 2]}
    assert r.dissenters == ["c"] and r.outcome == "approved"


def test_tie_has_no_decision() -> None:
    r = decide({"a": APPROVE, "b": REJECT}, {}, ConsensusSpec())
    assert r.decision is None
    assert r.outcome == "manual_review"
    assert r.dissenters == ["a", "b"]


def test_weights_change_the_winner() -> None:
    outputs = {"senior": APPROVE, "j1": REJECT, "j2": REJECT}
    assert decide(outputs, {}, ConsensusSpec(strategy="majority")).decision == "reject"
    r = decide(outputs, {}, ConsensusSpec(strategy="weighted", weights={"senior": 3.0}))
    assert (r.decision, r.agreement_level, r.outcome) == ("approve", 0.6, "approved")
    assert r.dissenters == ["j1", "j2"]


def test_weights_ignored_outside_weighted_strategy() -> None:
    outputs = {"senior": APPROVE, "j1": REJECT, "j2": REJECT}
    r = decide(outputs, {}, ConsensusSpec(strategy="majority", weights={"senior": 3.0}))
    assert r.decision == "reject"


def test_threshold_above_cutoff() -> None:
    spec = ConsensusSpec(strategy="threshold", field="score", cutoff=0.5,
                         above="go", below="stop")
    r = decide({"a": {"score": 0.9}, "b": {"score": 0.7}, "c": {"score": 0.2}}, {}, spec)
    assert (r.decision, r.mean, r.outcome) == ("go", 0.6, "approved")
    assert r.agreement_level == pytest.approx(2 / 3, abs=1e-6)
    assert r.dissenters == ["c"]


def test_threshold_below_cutoff() -> None:
    spec = ConsensusSpec(strategy="threshold", field="score", cutoff=0.5)
    r = decide({"a": {"score": 0.1}, "b": {"score": 0.2}, "c": {"score": 0.9}}, {}, spec)
    assert (r.decision, r.mean) == ("reject", 0.4)
    assert r.dissenters == ["c"]


def test_threshold_agreement_counts_non_numbers_as_abstentions() -> None:
    spec = ConsensusSpec(strategy="threshold", field="score", cutoff=0.5, threshold=0.6)
    r = decide({"a": {"score": 0.9}, "b": {"score": "high"}, "c": {"score": 0.1}}, {}, spec)
    assert r.mean == 0.5 and r.decision == "approve"
    assert "b" in r.abstentions
    assert r.agreement_level == pytest.approx(1 / 3, abs=1e-6)
    assert r.outcome == "manual_review"


def test_threshold_strategy_needs_field_and_cutoff() -> None:
    with pytest.raises(ValueError, match="cutoff"):
        ConsensusSpec(strategy="threshold", field="score")


def test_on_disagreement_fail() -> None:
    r = decide({"a": APPROVE, "b": REJECT, "c": APPROVE}, {},
               ConsensusSpec(strategy="unanimous", on_disagreement="fail"))
    assert r.outcome == "failed"


# -- through the executor

async def test_unanimous_parallel_workflow_completes(sqlite_store: Any) -> None:
    ex = MultiAgentExecutor(store=sqlite_store)
    wf = parallel(agent("a", "approve"), agent("b", "approve"), agent("c", "approve"),
                  strategy="unanimous")
    r = await ex.execute("e1", wf, {})
    assert r.status == "completed" and r.decision == "approve"
    assert r.consensus["agreement_level"] == 1.0
    assert r.consensus["outcome"] == "approved"
    [stored] = await sqlite_store.get_consensus("e1")
    assert stored.outcome == "approved" and stored.decision == "approve"


async def test_split_vote_waits_for_review(sqlite_store: Any) -> None:
    ex = MultiAgentExecutor(store=sqlite_store)
    wf = parallel(agent("a", "approve"), agent("b", "approve"), agent("c", "reject"),
                  strategy="unanimous")
    r = await ex.execute("e1", wf, {})
    assert r.status == "awaiting_review" and r.decision is None
    assert r.consensus["dissenters"] == ["c"]

    r = await ex.review("e1", "reject", reviewer="ana")
    assert r.status == "completed" and r.decision == "reject"
    assert r.consensus["reviewed_by"] == "ana"
    stored = await ex.get("e1")
    assert (stored.status, stored.decision) == ("completed", "reject")
    [vote] = await sqlite_store.get_consensus("e1")
    assert vote.reviewed_decision == "reject"

    with pytest.raises(ExecutionStateError):
        await ex.review("e1", "approve")
    assert (await ex.get("e1")).decision == "reject"


async def test_failing_agent_abstains(sqlite_store: Any) -> None:
    ex = MultiAgentExecutor(store=sqlite_store)
    wf = parallel(agent("a", "approve"), agent("b", "approve"), agent("c", "boom"))
    r = await ex.execute("e1", wf, {})
    assert r.status == "completed" and r.decision == "approve"
    assert "agent exploded" in r.consensus["abstentions"]["c"]
    assert r.consensus["agreement_level"] == pytest.approx(2 / 3, abs=1e-6)
    assert r.failed_agent is None


async def test_parallel_disagreement_fail_fails_the_execution(sqlite_store: Any) -> None:
    ex = MultiAgentExecutor(store=sqlite_store)
    wf = parallel(agent("a", "approve"), agent("b", "reject"),
                  strategy="majority", on_disagreement="fail")
    r = await ex.execute("e1", wf, {})
    assert r.status == "failed" and r.failure_type == "no_consensus"
    assert r.failed_agent == "__consensus__"


async def test_dag_disagreement_fail_fails_the_execution(sqlite_store: Any) -> None:
    ex = MultiAgentExecutor(store=sqlite_store)
    wf = {"name": "dag_vote", "execution_order": "dag", "agents": [
        agent("r1", "approve"), agent("r2", "reject"),
        {"id": "vote", "framework": "consensus", "depends_on": ["r1", "r2"],
         "consensus": {"on_disagreement": "fail"}},
    ]}
    r = await ex.execute("e1", wf, {})
    assert (r.status, r.failed_agent, r.failure_type) == ("failed", "vote", "no_consensus")
    assert r.consensus["outcome"] == "failed"


async def test_dag_consensus_node_feeds_downstream_agent(sqlite_store: Any) -> None:
    ex = MultiAgentExecutor(store=sqlite_store)
    wf = {"name": "dag_vote", "execution_order": "dag", "agents": [
        agent("r1", "approve"), agent("r2", "reject"), agent("r3", "approve"),
        {"id": "vote", "framework": "consensus", "depends_on": ["r1", "r2", "r3"],
         "consensus": {"strategy": "majority", "field": "decision"}},
        agent("notify", "echo", depends_on=["vote"]),
    ]}
    r = await ex.execute("e1", wf, {})
    assert r.status == "completed"
    seen = r.output["seen"]
    assert r.output["agent"] == "notify"
    assert (seen["decision"], seen["dissenters"]) == ("approve", ["r2"])
    assert r.decision == "approve"
    cps = {c.agent_id for c in await sqlite_store.get_checkpoints("e1")}
    assert cps == {"r1", "r2", "r3", "vote", "notify"}
