"""Invalid workflows are rejected up front, with every problem named by agent and field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from omium.engine.executor import MultiAgentExecutor
from omium.engine.graph import PARALLEL_VOTE, prepare
from omium.errors import FieldProblem, InputValidationError, WorkflowValidationError
from omium.workflow import load_workflow

ROOT = Path(__file__).resolve().parent.parent
LOAN = ROOT / "examples" / "loan_approval"
ECHO = "tests.agents_for_tests:echo"


def agent(agent_id: str, **fields: Any) -> dict[str, Any]:
    return {"id": agent_id, "definition": {"callable": ECHO}, **fields}


def workflow(*agents: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"name": "wf", "agents": list(agents), **fields}


def problems_of(defn: Any) -> list[FieldProblem]:
    with pytest.raises(WorkflowValidationError) as info:
        prepare(defn)
    return info.value.problems


def test_duplicate_ids() -> None:
    assert problems_of(workflow(agent("a"), agent("a"))) == [
        FieldProblem("agents[1].id", "duplicate agent id 'a'")]


def test_unknown_framework_lists_known_ones() -> None:
    [p] = problems_of(workflow(agent("a", framework="smolagents")))
    assert p.path == "agents[0] (a).framework"
    assert "'smolagents'" in p.reason
    assert "python" in p.reason and "consensus" in p.reason


@pytest.mark.parametrize(("definition", "reason"), [
    ({"callable": "no_such_module_xyz:run"}, "cannot import module 'no_such_module_xyz'"),
    ({"callable": "tests.agents_for_tests:missing"}, "has no attribute 'missing'"),
    ({"callable": "no_colon"}, "expected 'module:function'"),
    ({}, "required for framework: python"),
])
def test_callable_must_import(definition: dict[str, Any], reason: str) -> None:
    [p] = problems_of(workflow({"id": "a", "definition": definition}))
    assert p.path == "agents[0] (a).definition.callable"
    assert reason in p.reason


def test_invalid_json_schema_points_inside_the_schema() -> None:
    bad = {"type": "object", "properties": {"x": {"type": "strng"}}}
    [p] = problems_of(workflow(agent("a", input_schema=bad)))
    assert p.path == "agents[0] (a).input_schema/properties/x/type"
    assert p.reason.startswith("not a valid JSON Schema")


def test_depends_on_needs_dag() -> None:
    assert problems_of(workflow(agent("a"), agent("b", depends_on=["a"]))) == [
        FieldProblem("agents[1] (b).depends_on", "only allowed with execution_order: dag")]


def test_unknown_dependency() -> None:
    defn = workflow(agent("a"), agent("b", depends_on=["c"]), execution_order="dag")
    assert problems_of(defn) == [FieldProblem("agents[1] (b).depends_on", "unknown agent 'c'")]


def test_cycle_shows_its_path() -> None:
    defn = workflow(agent("a", depends_on=["b"]), agent("b", depends_on=["a"]), agent("c"),
                    execution_order="dag")
    assert problems_of(defn) == [FieldProblem("agents", "dependency cycle: a -> b -> a")]


def test_unknown_key_is_a_typo() -> None:
    defn = workflow(agent("a"), agent("b", depends_ob=["a"]), execution_order="dag")
    assert problems_of(defn) == [
        FieldProblem("agents[1] (b).depends_ob", "Extra inputs are not permitted")]


def test_out_of_range_numbers_reported_together() -> None:
    defn = workflow(agent("a"), agent("b", timeout_s=-1, retry={"max_attempts": 0}))
    assert {p.path for p in problems_of(defn)} == {
        "agents[1] (b).timeout_s", "agents[1] (b).retry.max_attempts"}


def test_fallback_to_unknown_agent() -> None:
    defn = workflow(agent("a", fallback="ghost"), agent("b"))
    assert problems_of(defn) == [FieldProblem("agents[0] (a).fallback", "unknown agent 'ghost'")]


def test_unknown_fallback_in_single_agent_workflow_is_the_only_problem() -> None:
    defn = workflow(agent("a", fallback="ghost"))
    assert problems_of(defn) == [FieldProblem("agents[0] (a).fallback", "unknown agent 'ghost'")]


def test_workflow_consensus_needs_parallel() -> None:
    [p] = problems_of(workflow(agent("a"), agent("b"), consensus={"strategy": "majority"}))
    assert p.path == "consensus"
    assert "execution_order: parallel" in p.reason


def test_several_problems_reported_together() -> None:
    defn = workflow(agent("a"), agent("a"), agent("b", depends_on=["zz"]),
                    agent("c", fallback="ghost"), execution_order="dag")
    with pytest.raises(WorkflowValidationError) as info:
        prepare(defn)
    assert info.value.problems == [
        FieldProblem("agents[1].id", "duplicate agent id 'a'"),
        FieldProblem("agents[2] (b).depends_on", "unknown agent 'zz'"),
        FieldProblem("agents[3] (c).fallback", "unknown agent 'ghost'"),
    ]
    assert "(3 problem(s))" in str(info.value)


def test_several_callables_reported_together() -> None:
    defn = workflow({"id": "a", "definition": {"callable": "no_such_module_xyz:f"}},
                    agent("b", framework="smolagents"))
    assert [p.path for p in problems_of(defn)] == [
        "agents[0] (a).definition.callable", "agents[1] (b).framework"]


def test_non_mapping_document(tmp_path: Path) -> None:
    path = tmp_path / "wf.yaml"
    path.write_text("- just\n- a list\n")
    with pytest.raises(WorkflowValidationError) as info:
        load_workflow(path)
    assert info.value.source == str(path)
    assert info.value.problems == [FieldProblem("", "a workflow must be a mapping, got list")]


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "wf.yaml"
    path.write_text("name: wf\nagents:\n  - id: a\n    definition: {callable: x\n")
    with pytest.raises(WorkflowValidationError) as info:
        load_workflow(path)
    [p] = info.value.problems
    assert p.reason.startswith("not valid YAML/JSON")
    assert "line" in p.reason
    assert str(path) in str(info.value)


def test_json_file_with_problem_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "wf.json"
    path.write_text(json.dumps(workflow(agent("a", timeout_s=0))))
    with pytest.raises(WorkflowValidationError) as info:
        load_workflow(path)
    assert [p.path for p in info.value.problems] == ["agents[0] (a).timeout_s"]
    assert info.value.source == str(path)


def test_valid_json_file_loads(tmp_path: Path) -> None:
    path = tmp_path / "wf.json"
    path.write_text(json.dumps(workflow(agent("a"), agent("b"))))
    defn = load_workflow(path)
    assert [a.id for a in defn.agents] == ["a", "b"]
    assert defn.base_dir == str(tmp_path.resolve())


def test_example_sequential_workflow_builds_a_chain() -> None:
    plan = prepare(load_workflow(LOAN / "workflow.yaml"))
    assert {n.id: n.deps for n in plan.nodes.values()} == {
        "kyc_agent": [], "fraud_agent": ["kyc_agent"], "credit_agent": ["fraud_agent"]}
    assert [n.id for n in plan.entry_nodes] == ["kyc_agent"]
    assert all(n.agent is not None for n in plan.nodes.values())


def test_example_parallel_workflow_ends_in_a_vote() -> None:
    plan = prepare(load_workflow(LOAN / "parallel.yaml"))
    reviewers = ["conservative_reviewer", "balanced_reviewer", "growth_reviewer"]
    assert list(plan.nodes) == [*reviewers, PARALLEL_VOTE]
    vote = plan.nodes[PARALLEL_VOTE]
    assert vote.is_vote and vote.deps == reviewers
    assert vote.consensus is not None and vote.consensus.strategy == "unanimous"
    assert all(plan.nodes[r].deps == [] for r in reviewers)


async def test_invalid_workflow_writes_nothing(sqlite_store: Any) -> None:
    executor = MultiAgentExecutor(store=sqlite_store)
    with pytest.raises(WorkflowValidationError):
        await executor.execute("e1", workflow(agent("a", framework="smolagents")))
    assert await sqlite_store.list_executions() == []


async def test_inputs_violating_first_schema_write_nothing(sqlite_store: Any) -> None:
    executor = MultiAgentExecutor(store=sqlite_store)
    with pytest.raises(InputValidationError) as info:
        await executor.execute("e1", load_workflow(LOAN / "workflow.yaml"),
                               {"applicant": "not an object"})
    [p] = info.value.problems
    assert p.path == "inputs.applicant"
    assert "kyc_agent" in p.reason
    assert await sqlite_store.list_executions() == []
