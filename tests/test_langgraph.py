"""``framework: langgraph``: real LangGraph graphs (plain Python nodes, tests/langgraph_agents.py)
as Omium agents. A graph killed mid-graph resumes after its last completed super-step; an
``interrupt()`` pauses the execution for review and the decision resumes the graph; without
LangGraph installed the workflow is bad input, not an ImportError."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

pytest.importorskip("langgraph")

from omium import MultiAgentExecutor, open_store
from omium.agents.base import AgentContext
from omium.agents.runtime import AgentRuntime, lend
from omium.engine.graph import prepare
from omium.errors import WorkflowValidationError
from omium.store.base import Store
from tests._api_harness import V1, Api

ROOT = Path(__file__).resolve().parent.parent
G = "tests.langgraph_agents:"
STEPS = ["plan", "research", "write"]


def lg(agent_id: str, graph: str, **definition: Any) -> dict[str, Any]:
    return {"id": agent_id, "framework": "langgraph",
            "definition": {"graph": G + graph, **definition}}


def workflow(*agents: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"name": "lg", "agents": list(agents), **extra}


def _effects(path: Path) -> list[str]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture
def effects(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "effects.jsonl"
    monkeypatch.setenv("OMIUM_TEST_EFFECTS", str(path))
    return path


# -- definitions and outputs
@pytest.mark.parametrize("graph", ["pipeline", "pipeline_builder", "pipeline_factory",
                                   "pipeline_async_factory"])
async def test_every_kind_of_graph_reference_runs_and_outputs_its_final_state(
        store: Store, effects: Path, graph: str) -> None:
    async with MultiAgentExecutor(store) as ex:
        result = await ex.execute("e1", workflow(lg("writer", graph)), {"topic": "ducks"})
    assert result.status == "completed", result.error
    assert result.output == {"topic": "ducks", "steps": STEPS}
    assert _effects(effects) == STEPS
    # Every super-step was checkpointed in Omium's store, on the agent's own thread.
    steps = await store.list_graph_checkpoints(thread_id="e1:writer")
    assert [c.metadata["step"] for c in steps] == [3, 2, 1, 0, -1]
    assert {c.execution_id for c in steps} == {"e1"}


async def test_messages_become_role_and_content_and_output_key_picks_one_channel(
        sqlite_store: Store) -> None:
    wf = workflow(lg("chat", "chat_graph", output_key="messages"))
    async with MultiAgentExecutor(sqlite_store) as ex:
        result = await ex.execute("chat", wf, {"messages": [{"role": "user", "content": "hi"}]})
        missing = await ex.execute("nokey", workflow(lg("chat", "chat_graph",
                                                        output_key="answer")),
                                   {"messages": [{"role": "user", "content": "hi"}]})
    assert result.status == "completed", result.error
    assert result.output == [{"role": "user", "content": "hi"},
                             {"role": "assistant", "content": "you said: hi"}]
    assert (missing.status, missing.failure_type) == ("failed", "validation_error")
    assert "final state has no 'answer' (it has ['messages'])" in (missing.error or "")


def test_bad_definitions_are_refused_before_anything_runs() -> None:
    bad = workflow(lg("a", "not_a_graph"), lg("b", "broken_builder"),
                   lg("c", "nowhere_at_all"),
                   {"id": "d", "framework": "langgraph", "definition": {"output_key": 3}},
                   lg("e", "pipeline", extra=1))
    with pytest.raises(WorkflowValidationError) as info:
        prepare(bad)
    problems = {p.path: p.reason for p in info.value.problems}
    assert "is a int, not a compiled graph, a StateGraph or a factory" in problems[
        "agents[0] (a).definition.graph"]
    assert "does not compile" in problems["agents[1] (b).definition.graph"]
    assert "has no attribute 'nowhere_at_all'" in problems["agents[2] (c).definition.graph"]
    assert problems["agents[3] (d).definition.output_key"] == "must be a non-empty string"
    assert problems["agents[3] (d).definition.graph"].startswith("required")
    assert problems["agents[4] (e).definition"] == "unknown keys ['extra']"


async def test_outside_an_omium_run_a_graph_runs_with_an_in_memory_saver(effects: Path
                                                                         ) -> None:
    plan = prepare(workflow(lg("writer", "pipeline")))
    agent = plan.nodes["writer"].agent
    assert agent is not None
    out = await agent.run({"topic": "t"}, AgentContext("x", "writer", 1))
    assert out == {"topic": "t", "steps": STEPS}


async def test_a_graph_that_finished_before_its_checkpoint_is_not_run_again(
        sqlite_store: Store, effects: Path) -> None:
    """The kill came after the graph's last super-step, before Omium checkpointed the agent:
    the next call returns the graph's final state and runs no node."""
    agent = prepare(workflow(lg("writer", "pipeline"))).nodes["writer"].agent
    assert agent is not None
    ctx = AgentContext("done-graph", "writer", 1)
    with lend(AgentRuntime(sqlite_store)):
        first = await agent.run({"topic": "t"}, ctx)
        again = await agent.run({"topic": "t"}, ctx)
    assert first == again == {"topic": "t", "steps": STEPS}
    assert _effects(effects) == STEPS


# -- resuming inside the graph
async def test_a_retried_attempt_resumes_the_graph_at_its_failed_super_step(
        store: Store, effects: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMIUM_TEST_FAIL_NODE", "research")
    monkeypatch.setenv("OMIUM_TEST_FAIL_ONCE", str(tmp_path / "failed-once"))
    wf = workflow({**lg("writer", "pipeline"), "retry": {"max_attempts": 2, "backoff_s": 0}})
    async with MultiAgentExecutor(store) as ex:
        result = await ex.execute("retry", wf, {"topic": "t"})
    assert result.status == "completed", result.error
    assert result.output == {"topic": "t", "steps": STEPS}
    assert _effects(effects) == ["plan", "research", "research", "write"]  # plan ran once


async def test_a_rollback_runs_a_graph_again_on_a_fresh_thread(
        sqlite_store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rolled back, the producer must really run again: its old thread would hand back the
    old answer (n = 1) and the consumer would refuse it forever."""
    monkeypatch.setenv("OMIUM_TEST_COUNTER", str(tmp_path / "n"))
    schema = {"type": "object", "properties": {"n": {"type": "integer", "minimum": 2}}}
    wf = workflow(lg("producer", "counter_graph"),
                  {"id": "consumer", "definition": {"callable": "tests.agents_for_tests:echo"},
                   "input_schema": schema, "on_failure": "rollback", "max_rollbacks": 2})
    async with MultiAgentExecutor(sqlite_store) as ex:
        result = await ex.execute("rb", wf, {})
    assert result.status == "completed", result.error
    assert result.results["consumer"]["seen"]["n"] == 2
    threads = {c.thread_id for c in await sqlite_store.list_graph_checkpoints()}
    assert threads == {"rb:producer", "rb:producer:1"}


def _omium(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "omium.cli", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


async def test_sigkill_mid_graph_then_resume_runs_no_finished_node_again(
        tmp_path: Path, database_url: str) -> None:
    wf = tmp_path / "wf.yaml"
    wf.write_text(yaml.safe_dump(workflow(lg("writer", "pipeline"), inputs={"topic": "t"})))
    effects = tmp_path / "effects.jsonl"
    env = {**os.environ, "OMIUM_DATABASE_URL": database_url,
           "OMIUM_TEST_EFFECTS": str(effects), "OMIUM_TEST_STEP_S": "0.5"}
    proc = _omium("run", str(wf), "--execution-id", "victim", "--json", env=env)
    deadline = time.monotonic() + 60
    while "research" not in _effects(effects) and time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        await asyncio.sleep(0.02)
    proc.send_signal(signal.SIGKILL)  # plan is done, research is in flight
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    async with open_store(database_url) as store:
        assert await store.get_checkpoints("victim") == []  # the agent itself did not finish
        saved = await store.get_graph_checkpoint("victim:writer", "")
    assert saved is not None and saved.metadata["step"] == 1  # after plan's super-step

    resumed = _omium("resume", "victim", "--json", env={**env, "OMIUM_TEST_STEP_S": "0"})
    stdout, stderr = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, stderr
    result = json.loads(stdout)
    assert result["status"] == "completed"
    assert result["output"] == {"topic": "t", "steps": STEPS}
    # plan finished before the kill: once. research was in flight: again. write: once.
    assert Counter(_effects(effects)) == {"plan": 1, "research": 2, "write": 1}


# -- interrupt() and review
def test_an_interrupt_pauses_for_review_and_each_decision_resumes_the_graph(
        tmp_path: Path) -> None:
    from tests._cli_process import omium_cli

    wf = tmp_path / "wf.yaml"
    wf.write_text(yaml.safe_dump(workflow(lg("payer", "approval_graph"),
                                          inputs={"amount": 120})))
    env = {"OMIUM_DATABASE_URL": f"sqlite:///{tmp_path / 'o.db'}",
           "OMIUM_TEST_EFFECTS": str(tmp_path / "effects.jsonl")}
    ran = omium_cli("run", wf, "--execution-id", "pay", env=env)
    assert ran.code == 3, ran.text
    assert "status: awaiting_review" in ran.out
    assert 'payer: review requested: {"question": "approve the payment?", "amount": 120}' \
        in ran.out
    assert "decide with: omium review pay --decision TEXT" in ran.out
    # any text answers the graph's own question: it gets it back as Command(resume=...)
    first = omium_cli("review", "pay", "--decision", "yes, pay [120]", "--reviewer", "ann",
                      env=env)
    assert first.code == 3, first.text  # the graph went on to its second interrupt
    assert "payer: review requested: really?" in first.out
    # reject is an answer the graph gets too, not a failure of the execution
    second = omium_cli("review", "pay", "--decision", "reject", "--json", env=env)
    assert second.code == 0, second.text
    out = json.loads(second.out)
    assert out["status"] == "completed"
    assert out["output"] == {"amount": 120, "steps": ["prepare", "ask", "confirm"],
                             "first": "yes, pay [120]", "second": "reject"}
    # prepare ran once; ask ran again when resumed (LangGraph re-enters an interrupted node)
    assert _effects(tmp_path / "effects.jsonl") == ["prepare", "ask", "ask"]

    async def events() -> list[tuple[str, Any]]:
        async with open_store(env["OMIUM_DATABASE_URL"]) as store:
            return [(e.type, e.data) for e in await store.get_events("pay")
                    if e.type in ("review_requested", "review")]

    seen = asyncio.run(events())
    assert [t for t, _ in seen] == ["review_requested", "review", "review_requested", "review"]
    assert seen[0][1]["prompt"] == {"question": "approve the payment?", "amount": 120}
    assert seen[1][1] == {"decision": "yes, pay [120]", "reviewer": "ann"}


async def test_the_api_s_review_resumes_an_interrupted_graph(api: Api) -> None:
    tid, h = await api.tenant("acme")
    wf = workflow(lg("payer", "approval_graph"))
    ex = await api.submit(h, workflow=wf, inputs={"amount": 7})
    paused = await api.drive(tid, ex)
    assert (paused.status, paused.failed_agent, paused.failure_type) == (
        "awaiting_review", "payer", "review_requested")
    detail = (await api.client.get(f"{V1}/executions/{ex}", headers=h)).json()
    assert detail["status"] == "awaiting_review"
    url = f"{V1}/executions/{ex}/review"
    r = await api.client.post(url, json={"decision": ""}, headers=h)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "decision"], r.text
    for decision, after in (("pay 7 <b>now</b>", "awaiting_review"), ("approve", "completed")):
        r = await api.client.post(url, json={"decision": decision}, headers=h)
        assert r.status_code == 202 and r.json()["status"] == "queued", r.text
        result = await api.drive(tid, ex)  # a worker's part
        assert result.status == after, result.error
    assert result.output == {"amount": 7, "steps": ["prepare", "ask", "confirm"],
                             "first": "pay 7 <b>now</b>", "second": "approve"}


async def test_one_review_resumes_every_graph_a_parallel_step_paused_on(
        sqlite_store: Store) -> None:
    wf = workflow(lg("left", "approval_graph"), lg("right", "approval_graph"),
                  execution_order="dag")
    async with MultiAgentExecutor(sqlite_store) as ex:
        paused = await ex.execute("both", wf, {"amount": 1})
        assert paused.status == "awaiting_review"
        again = await ex.review("both", "approve")  # both graphs reach their second interrupt
        assert again.status == "awaiting_review"
        done = await ex.review("both", "reject")
    assert done.status == "completed", done.error
    for side in ("left", "right"):
        assert done.results[side]["first"] == "approve"
        assert done.results[side]["second"] == "reject"
    asked = [e.agent_id for e in await sqlite_store.get_events("both")
             if e.type == "review_requested"]
    assert sorted(asked) == ["left", "left", "right", "right"]


async def test_over_the_api_a_graph_is_named_by_a_factory(api: Api) -> None:
    _, h = await api.tenant("acme")
    r = await api.client.post(f"{V1}/executions", headers=h,
                              json={"workflow": workflow(lg("writer", "pipeline"))})
    assert r.status_code == 422, r.text
    [problem] = r.json()["detail"]
    assert problem["loc"] == "agents[0] (writer).definition.graph"
    assert "not a function or class" in problem["msg"]


# -- without LangGraph
_NO_LANGGRAPH = ("import sys; sys.modules['langgraph'] = None; "
                 "from omium.cli import main; sys.argv[0] = 'omium'; main()")


def test_without_langgraph_validate_and_run_are_bad_input_naming_the_agent(
        tmp_path: Path) -> None:
    wf = tmp_path / "wf.yaml"
    wf.write_text(yaml.safe_dump(workflow(lg("fraud_agent", "pipeline"))))
    env = {**os.environ, "PYTHONPATH": str(ROOT),
           "OMIUM_DATABASE_URL": f"sqlite:///{tmp_path / 'o.db'}"}
    for command in (["validate", str(wf)], ["run", str(wf)]):
        p = subprocess.run([sys.executable, "-c", _NO_LANGGRAPH, *command], cwd=tmp_path,
                           env=env, capture_output=True, text=True, timeout=60)
        assert p.returncode == 2, p.stdout + p.stderr
        assert "Traceback" not in p.stderr
        assert "agents[0] (fraud_agent).framework" in p.stderr
        assert "pip install 'omium[langgraph]'" in p.stderr


async def test_without_langgraph_the_api_answers_422_naming_the_agent(
        api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m == "langgraph" or m.startswith("langgraph.")]:
        monkeypatch.setitem(sys.modules, name, None)
    _, h = await api.tenant("acme")
    r = await api.client.post(f"{V1}/executions", headers=h, json={
        "workflow": workflow(lg("fraud_agent", "pipeline_factory"))})
    assert r.status_code == 422, r.text
    [problem] = r.json()["detail"]
    assert problem["loc"] == "agents[0] (fraud_agent).framework"
    assert "pip install 'omium[langgraph]'" in problem["msg"]
