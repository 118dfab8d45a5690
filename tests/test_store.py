"""Storage conformance: the same behaviour from SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import time

import pytest

from omium.coordination.handoff import HandoffRecord
from omium.store import (
    CheckpointRecord,
    ConsensusRecord,
    EventRecord,
    ExecutionRecord,
    open_store,
)
from omium.store._driver import Driver
from omium.store.base import Store
from omium.store.migrate import MIGRATIONS_DIR, current_revision
from omium.store.migrations import HEAD


def _exec(execution_id: str, **kw: object) -> ExecutionRecord:
    return ExecutionRecord(execution_id, "wf", {"name": "wf", "agents": []}, {"x": 1}, **kw)


def _cp(execution_id: str, agent_id: str, output: object = None) -> CheckpointRecord:
    now = time.time()
    return CheckpointRecord(execution_id, agent_id, 0, 1, output or {"a": agent_id}, now, now)


def test_head_constant_matches_alembic_scripts() -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    assert ScriptDirectory.from_config(cfg).get_current_head() == HEAD


async def test_connect_migrates_once_and_reconnect_is_cheap(store: Store) -> None:
    driver: Driver = store.driver  # type: ignore[attr-defined]
    assert await current_revision(driver) == HEAD
    again = open_store(store.url)
    await again.connect()  # already at head: no migration, no error
    await again.close()


async def test_create_execution_is_idempotent_by_id(store: Store) -> None:
    first, created = await store.create_execution(_exec("e1", status="running"))
    assert created and first.status == "running" and first.inputs == {"x": 1}
    second, created_again = await store.create_execution(_exec("e1", status="queued"))
    assert not created_again and second.status == "running"


async def test_update_execution_with_expected_status_is_conditional(store: Store) -> None:
    await store.create_execution(_exec("e2", status="awaiting_review"))
    ev = EventRecord("e2", "review", None, {"decision": "approve"}, time.time())
    assert await store.update_execution("e2", status="running",
                                        expect_status=["awaiting_review"], events=[ev])
    assert not await store.update_execution("e2", status="running",
                                            expect_status=["awaiting_review"])
    rec = await store.get_execution("e2")
    assert rec is not None and rec.status == "running"
    assert [e.type for e in await store.get_events("e2")] == ["review"]
    with pytest.raises(TypeError):
        await store.update_execution("e2", status="failed", status_code=1)


async def test_result_and_decision_round_trip_as_json(store: Store) -> None:
    await store.create_execution(_exec("e3"))
    result = {"results": {"a": {"nested": [1, 2.5, None, "ü"]}}, "decision": "approve"}
    await store.update_execution("e3", status="completed", decision="approve", result=result,
                                 finished_at=123.5)
    rec = await store.get_execution("e3")
    assert rec is not None
    assert (rec.result, rec.decision, rec.finished_at) == (result, "approve", 123.5)


async def test_one_live_checkpoint_per_agent_and_rollback_supersedes(store: Store) -> None:
    await store.create_execution(_exec("e4"))
    h = HandoffRecord("e4", "a", ["b"], "success", {"b": {"ack": True, "reason": None}},
                      None, None, 0.2, time.time())
    assert await store.save_checkpoint(_cp("e4", "a"), handoffs=[h])
    assert not await store.save_checkpoint(_cp("e4", "a", {"other": 1}))  # conflict: no write
    assert len(await store.get_handoffs("e4")) == 1  # the conflicting batch left nothing
    assert [c.output for c in await store.get_checkpoints("e4")] == [{"a": "a"}]
    assert await store.supersede_checkpoints("e4", ["a"]) == 1
    assert await store.get_checkpoints("e4") == []
    assert await store.save_checkpoint(_cp("e4", "a", {"again": 2}))
    every = await store.get_checkpoints("e4", include_superseded=True)
    assert [(c.output, c.superseded) for c in every] == [({"a": "a"}, True),
                                                          ({"again": 2}, False)]


async def test_list_executions_filters_and_orders_newest_first(store: Store) -> None:
    for i in range(3):
        await store.create_execution(_exec(f"l{i}", status="failed" if i == 1 else "running",
                                           tenant_id="t1"))
        await asyncio.sleep(0.002)
    await store.create_execution(_exec("other", tenant_id="t2"))
    assert [r.id for r in await store.list_executions(tenant_id="t1")] == ["l2", "l1", "l0"]
    assert [r.id for r in await store.list_executions(status="failed")] == ["l1"]
    assert len(await store.list_executions(limit=2)) == 2


async def test_consensus_review_happens_once(store: Store) -> None:
    await store.create_execution(_exec("e5"))
    rec = ConsensusRecord("e5", "vote", {"votes": {"a": "approve", "b": "reject"}},
                          "manual_review", None, 0.5)
    await store.save_consensus(rec)
    assert await store.review_consensus("e5", "vote", "approve")
    assert not await store.review_consensus("e5", "vote", "reject")
    [saved] = await store.get_consensus("e5")
    assert (saved.reviewed_decision, saved.result["votes"]["b"]) == ("approve", "reject")


async def test_workflows_are_stored_once_by_content(store: Store) -> None:
    a = await store.put_workflow("wf", {"name": "wf", "agents": [1]})
    b = await store.put_workflow("wf", {"agents": [1], "name": "wf"})
    c = await store.put_workflow("wf", {"name": "wf", "agents": [2]})
    assert a == b != c
    assert await store.get_workflow(a) == {"name": "wf", "agents": [1]}


def test_unsupported_urls_are_refused() -> None:
    with pytest.raises(ValueError, match="unsupported database URL"):
        open_store("mysql://x")
    with pytest.raises(ValueError, match="in-memory"):
        open_store("sqlite:///:memory:")
