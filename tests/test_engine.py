"""Execution semantics: retries and backoff, timeouts, recovery strategies, DAG scheduling,
failure events, idempotency keys."""

from __future__ import annotations

import json
from typing import Any

import pytest

from omium import MultiAgentExecutor
from omium.store.base import Store
from tests import agents_for_tests

T = "tests.agents_for_tests:"


def agent(agent_id: str, fn: str, **extra: Any) -> dict[str, Any]:
    return {"id": agent_id, "definition": {"callable": T + fn}, **extra}


def rollback_workflow(min_n: int, max_rollbacks: int) -> dict[str, Any]:
    """A counter producer; a consumer that needs n >= min_n and rolls the producer back."""
    schema = {"type": "object", "properties": {"n": {"type": "integer", "minimum": min_n}}}
    return {"agents": [agent("producer", "counter"),
                       agent("consumer", "echo", input_schema=schema, on_failure="rollback",
                             max_rollbacks=max_rollbacks)]}


class FakeSleep:
    """Records backoff delays instead of sleeping."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


@pytest.fixture
def sleep() -> FakeSleep:
    return FakeSleep()


async def _events(store: Store, execution_id: str) -> list[tuple[str, str | None, dict]]:
    return [(e.type, e.agent_id, e.data) for e in await store.get_events(execution_id)]


def overlapped(*naps: dict[str, Any]) -> bool:
    """Whether the naps all ran at once: every one started before any ended. Unlike a bound on
    the elapsed time, this holds however loaded the machine is."""
    return max(n["start"] for n in naps) < min(n["end"] for n in naps)


async def test_retry_with_exponential_backoff_records_each_attempt(store: Store,
                                                                   sleep: FakeSleep) -> None:
    wf = {"agents": [agent("a", "flaky", retry={"max_attempts": 3, "backoff_s": 0.5})]}
    async with MultiAgentExecutor(store, sleep=sleep) as ex:
        result = await ex.execute("r1", wf)
    assert result.status == "completed" and result.results["a"] == {"ok": True, "attempt": 3}
    assert sleep.delays == [0.5, 1.0]
    events = await _events(store, "r1")
    failed = [d for t, _, d in events if t == "failure_detected"]
    assert [(d["attempt"], d["failure_type"]) for d in failed] == [(1, "exception"),
                                                                   (2, "exception")]
    assert "ConnectionError: transient failure on attempt 1" in failed[0]["error"]
    assert ("recovery_succeeded", "a", {"strategy": "retry", "attempts": 3}) in events
    [cp] = await store.get_checkpoints("r1")
    assert cp.attempt == 3


async def test_exhausted_retries_fail_the_execution_with_the_agent_named(
        sqlite_store: Store, sleep: FakeSleep) -> None:
    wf = {"agents": [agent("a", "echo"), agent("b", "boom", retry={"max_attempts": 2}),
                     agent("c", "echo")]}
    async with MultiAgentExecutor(sqlite_store, sleep=sleep) as ex:
        result = await ex.execute("f1", wf)
    assert (result.status, result.failed_agent, result.failure_type) == ("failed", "b",
                                                                         "exception")
    assert "agent exploded" in (result.error or "")
    assert list(result.results) == ["a"]  # c never ran
    rec = await sqlite_store.get_execution("f1")
    assert rec is not None and rec.status == "failed" and rec.failed_agent == "b"


async def test_timeout_is_classified_and_retried(sqlite_store: Store, sleep: FakeSleep) -> None:
    wf = {"agents": [agent("s", "slow", timeout_s=0.05, retry={"max_attempts": 2})]}
    async with MultiAgentExecutor(sqlite_store, sleep=sleep) as ex:
        result = await ex.execute("t1", wf)
    assert (result.status, result.failure_type) == ("failed", "timeout")
    assert agents_for_tests.cancelled.pop("t1") == 2  # each attempt cut off, not waited out
    kinds = [d["failure_type"] for t, _, d in await _events(sqlite_store, "t1")
             if t == "failure_detected"]
    assert kinds == ["timeout", "timeout"]


async def test_output_schema_violation_is_a_validation_error(sqlite_store: Store) -> None:
    schema = {"type": "object", "properties": {"risk_score": {"maximum": 1}}}
    wf = {"agents": [agent("a", "bad_output", output_schema=schema,
                           retry={"max_attempts": 1})]}
    async with MultiAgentExecutor(sqlite_store) as ex:
        result = await ex.execute("o1", wf)
    assert result.failure_type == "validation_error"
    assert "$.risk_score" in (result.error or "")


async def test_fallback_agent_serves_when_retries_are_exhausted(store: Store,
                                                                sleep: FakeSleep) -> None:
    wf = {"agents": [agent("main", "boom", fallback="backup", retry={"max_attempts": 2}),
                     agent("backup", "approve"), agent("after", "echo")]}
    async with MultiAgentExecutor(store, sleep=sleep) as ex:
        result = await ex.execute("fb1", wf)
    assert result.status == "completed"
    assert result.results["main"] == {"decision": "approve", "score": 0.9}
    assert "backup" not in result.results  # a fallback never runs on its own
    assert result.results["after"]["seen"] == result.results["main"]
    cps = {c.agent_id: c for c in await store.get_checkpoints("fb1")}
    assert cps["main"].served_by == "backup"
    assert ("recovery_succeeded", "main", {"strategy": "fallback", "served_by": "backup"}
            ) in await _events(store, "fb1")


async def test_rollback_reruns_the_producer_of_bad_data(sqlite_store: Store, tmp_path,
                                                        monkeypatch) -> None:
    monkeypatch.setenv("OMIUM_TEST_COUNTER", str(tmp_path / "n"))
    wf = rollback_workflow(min_n=2, max_rollbacks=2)
    async with MultiAgentExecutor(sqlite_store) as ex:
        result = await ex.execute("rb1", wf)
    # First output n=1 fails the consumer's schema; the producer re-runs and yields n=2.
    assert result.status == "completed"
    assert result.results["consumer"]["seen"] == {"n": 2}
    all_cps = await sqlite_store.get_checkpoints("rb1", include_superseded=True)
    assert [(c.agent_id, c.superseded) for c in all_cps] == [
        ("producer", True), ("producer", False), ("consumer", False)]
    handoffs = await sqlite_store.get_handoffs("rb1")
    assert [h.status for h in handoffs] == ["failed", "success"]
    events = await _events(sqlite_store, "rb1")
    assert ("recovery_succeeded", "consumer", {"strategy": "rollback"}) in events


async def test_manual_review_pause_then_approve_reruns_then_reject_fails(
        sqlite_store: Store, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("OMIUM_TEST_EFFECTS", str(tmp_path / "fx"))
    monkeypatch.setenv("OMIUM_TEST_FAIL_AT", "b")
    wf = {"agents": [agent("a", "side_effect"),
                     agent("b", "side_effect_or_fail", on_failure="manual_review",
                           retry={"max_attempts": 1})]}
    async with MultiAgentExecutor(sqlite_store) as ex:
        paused = await ex.execute("mr1", wf)
        assert (paused.status, paused.failed_agent) == ("awaiting_review", "b")
        monkeypatch.delenv("OMIUM_TEST_FAIL_AT")
        approved = await ex.review("mr1", "approve", reviewer="ops")
        assert approved.status == "completed" and approved.reused == ["a"]

        monkeypatch.setenv("OMIUM_TEST_FAIL_AT", "b")
        await ex.execute("mr2", wf)
        rejected = await ex.review("mr2", "reject")
    assert rejected.status == "failed" and "rejected in review" in (rejected.error or "")


async def test_dag_runs_independent_branches_concurrently(sqlite_store: Store) -> None:
    wf = {"execution_order": "dag", "agents": [
        agent("start", "echo"),
        agent("left", "nap", depends_on=["start"]),
        agent("right", "nap", depends_on=["start"]),
        agent("join", "echo", depends_on=["left", "right"])]}
    async with MultiAgentExecutor(sqlite_store) as ex:
        result = await ex.execute("dag1", wf)
    assert result.status == "completed"
    assert overlapped(result.results["left"], result.results["right"])
    # Several dependencies: the input is their outputs keyed by agent id.
    assert set(result.results["join"]["seen"]) == {"left", "right"}
    assert result.output == result.results["join"]


async def test_parallel_sync_agents_run_in_threads_and_failures_abstain(
        sqlite_store: Store) -> None:
    wf = {"execution_order": "parallel",
          "agents": [agent("n1", "nap"), agent("n2", "nap"),
                     agent("x", "boom", retry={"max_attempts": 1})],
          "consensus": {"strategy": "majority", "field": "napped"}}
    async with MultiAgentExecutor(sqlite_store) as ex:
        result = await ex.execute("par1", wf)
    assert result.status == "completed" and set(result.results) == {"n1", "n2"}
    assert overlapped(result.results["n1"], result.results["n2"])
    assert result.consensus is not None
    assert list(result.consensus["abstentions"]) == ["x"]
    assert result.consensus["agreement_level"] == pytest.approx(2 / 3, abs=1e-4)


async def test_agents_see_a_stable_idempotency_key(sqlite_store: Store, tmp_path,
                                                   monkeypatch) -> None:
    monkeypatch.setenv("OMIUM_TEST_EFFECTS", str(tmp_path / "fx"))
    wf = {"agents": [agent("a", "side_effect"), agent("b", "flaky_side_effect",
                                                      retry={"max_attempts": 2,
                                                             "backoff_s": 0})]}
    async with MultiAgentExecutor(sqlite_store) as ex:
        assert (await ex.execute("idem", wf)).status == "completed"
    lines = (tmp_path / "fx").read_text().splitlines()
    keys = [line.split('"')[-2] for line in lines]
    assert keys == ["idem:a", "idem:b", "idem:b"]


async def test_a_wide_parallel_step_of_sync_agents_is_not_capped_by_the_thread_pool(
        sqlite_store: Store) -> None:
    wf = {"execution_order": "parallel", "agents": [agent(f"n{i}", "nap") for i in range(12)],
          "consensus": {"field": "napped"}}
    async with MultiAgentExecutor(sqlite_store) as ex:
        result = await ex.execute("wide", wf)
    assert result.status == "completed" and len(result.results) == 12
    # All 12 at once: more than the default thread pool's workers (cores + 4) on a small machine.
    assert overlapped(*result.results.values())


async def test_a_run_cancelled_meanwhile_stays_cancelled(sqlite_store: Store, tmp_path,
                                                         monkeypatch) -> None:
    import asyncio

    monkeypatch.setenv("OMIUM_TEST_EFFECTS", str(tmp_path / "fx"))
    monkeypatch.setenv("OMIUM_TEST_STEP_S", "0.2")
    wf = {"agents": [agent("a", "side_effect"), agent("b", "side_effect")]}
    async with MultiAgentExecutor(sqlite_store) as ex:
        run = asyncio.ensure_future(ex.execute("cx", wf))
        for _ in range(500):  # until agent a has started
            if (tmp_path / "fx").exists():
                break
            await asyncio.sleep(0.01)
        # The run holds a lease: the cancel is a request, which the run sees at the latest
        # before it starts its next agent.
        assert await sqlite_store.request_cancel("cx", "local") == "cancelling"
        result = await run
    assert result.status == "cancelled"
    rec = await sqlite_store.get_execution("cx")
    assert rec is not None and rec.status == "cancelled" and rec.lease_owner is None
    # a was running at the cancel (a sync agent's thread cannot be stopped: it finished, its
    # checkpoint is kept); b never started.
    assert [c.agent_id for c in await sqlite_store.get_checkpoints("cx")] == ["a"]
    started = [json.loads(x)[1] for x in (tmp_path / "fx").read_text().splitlines()]
    assert started == ["a"]
    assert "cancelled" in [e.type for e in await sqlite_store.get_events("cx")]


async def test_the_rollback_budget_spans_resumes(sqlite_store: Store, tmp_path,
                                                 monkeypatch) -> None:
    monkeypatch.setenv("OMIUM_TEST_COUNTER", str(tmp_path / "n"))
    wf = rollback_workflow(min_n=100, max_rollbacks=1)  # the consumer never accepts
    async with MultiAgentExecutor(sqlite_store) as ex:
        first = await ex.execute("rb2", wf)
        second = await ex.resume("rb2")
    assert (first.status, second.status) == ("failed", "failed")
    assert second.failure_type == "validation_error"
    assert (tmp_path / "n").read_text() == "2"  # one rollback in all, not one per resume


async def test_a_definition_executed_again_is_prepared_once_and_its_edits_are_seen(
        sqlite_store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    import omium.engine.executor as executor_module

    prepared = []
    prepare = executor_module.prepare

    def counted(workflow: Any, **kw: Any) -> Any:
        prepared.append(json.dumps(workflow, sort_keys=True))
        return prepare(workflow, **kw)

    monkeypatch.setattr(executor_module, "prepare", counted)
    wf = {"name": "again", "agents": [agent("only", "echo")]}
    async with MultiAgentExecutor(sqlite_store) as ex:
        first = await ex.execute("again-1", wf, inputs={"n": 1})
        second = await ex.execute("again-2", wf, inputs={"n": 2})
        assert len(prepared) == 1  # the same content: its plan is reused
        wf["agents"].append(agent("more", "echo"))  # the same dict, edited
        third = await ex.execute("again-3", wf, inputs={"n": 3})
    assert len(prepared) == 2
    assert [r.status for r in (first, second, third)] == ["completed"] * 3
    assert second.results["only"]["seen"] == {"n": 2}
    assert set(third.results) == {"only", "more"}
    stored = [(await sqlite_store.get_execution(f"again-{i}")) for i in (1, 2, 3)]
    assert [len(rec.definition["agents"]) for rec in stored if rec] == [1, 1, 2]
