"""``ExecutionStore`` conformance: the same behaviour from SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

import pytest

from omium.errors import ExecutionStateError, IdempotencyKeyReusedError, StaleLeaseError
from omium.store import CheckpointRecord, ConsensusRecord, EventRecord
from omium.store.base import Store
from omium.store.records import (
    DetailTotals,
    ExecutionDetail,
    HandoffRecord,
    UsageRecord,
)
from tests._store_util import checkpoint, execution, handoff, usage


async def test_workflows_are_stored_once_by_content(store: Store) -> None:
    a = await store.put_workflow("wf", {"name": "wf", "agents": [1]})
    b = await store.put_workflow("wf", {"agents": [1], "name": "wf"})
    c = await store.put_workflow("wf", {"name": "wf", "agents": [2]})
    assert a == b != c
    assert await store.get_workflow(a) == {"name": "wf", "agents": [1]}
    assert await store.get_workflow("nope@0") is None


async def test_workflow_records_are_the_tenants_own_newest_first(store: Store) -> None:
    ids = []
    for i in range(3):
        ids.append(await store.put_workflow("wf", {"name": "wf", "agents": [i]}, "t1"))
        await asyncio.sleep(0.002)
    other = await store.put_workflow("wf", {"name": "wf", "agents": [0]}, "t2")
    assert other not in ids  # the same definition, another tenant: another id
    rec = await store.get_workflow_record(ids[0], "t1")
    assert rec is not None and (rec.id, rec.name, rec.tenant_id, rec.definition) == (
        ids[0], "wf", "t1", {"name": "wf", "agents": [0]})
    assert await store.get_workflow_record(ids[0], "t2") is None
    assert await store.get_workflow_record(ids[0]) == rec  # no tenant given: any tenant's
    listed = await store.list_workflows("t1")
    assert [w.id for w in listed] == ids[::-1]
    page = await store.list_workflows("t1", limit=1, before=(listed[0].created_at,
                                                             listed[0].id))
    assert [w.id for w in page] == [ids[1]]


async def test_create_execution_is_idempotent_by_id(store: Store) -> None:
    first, created = await store.create_execution(execution("e1", status="running"))
    assert created and first.status == "running" and first.inputs == {"x": 1}
    second, created_again = await store.create_execution(execution("e1", status="queued"))
    assert not created_again and second.status == "running"
    assert await store.get_execution("missing") is None


async def test_an_idempotency_key_names_one_request(store: Store) -> None:
    _, created = await store.create_execution(execution("k1", tenant_id="t",
                                                        idempotency_key="key"))
    assert created and await store.find_by_idempotency_key("t", "key") == "k1"
    same, created = await store.create_execution(execution("k2", tenant_id="t",
                                                           idempotency_key="key"))
    assert not created and same.id == "k1"
    with pytest.raises(IdempotencyKeyReusedError):
        await store.create_execution(replace(execution("k3", tenant_id="t",
                                                       idempotency_key="key"), inputs={"x": 2}))
    other, created = await store.create_execution(execution("k4", tenant_id="u",
                                                            idempotency_key="key"))
    assert created and other.id == "k4"  # keys are per tenant
    assert await store.find_by_idempotency_key("t", "other") is None


async def test_update_execution_with_expected_status_is_conditional(store: Store) -> None:
    await store.create_execution(execution("e2", status="awaiting_review"))
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
    await store.create_execution(execution("e3"))
    result = {"results": {"a": {"nested": [1, 2.5, None, "ü"]}}, "decision": "approve"}
    await store.update_execution("e3", status="completed", decision="approve", result=result,
                                 finished_at=123.5)
    rec = await store.get_execution("e3")
    assert rec is not None
    assert (rec.result, rec.decision, rec.finished_at) == (result, "approve", 123.5)
    assert rec.cancel_requested is False  # a flag, not 0, on both backends


async def test_list_executions_filters_and_orders_newest_first(store: Store) -> None:
    for i in range(3):
        await store.create_execution(execution(f"l{i}", tenant_id="t1",
                                               status="failed" if i == 1 else "running"))
        await asyncio.sleep(0.002)
    await store.create_execution(execution("other", tenant_id="t2"))
    newest = await store.list_executions(tenant_id="t1")
    assert [r.id for r in newest] == ["l2", "l1", "l0"]
    assert [r.id for r in await store.list_executions(status="failed")] == ["l1"]
    assert len(await store.list_executions(limit=2)) == 2
    after = await store.list_executions(tenant_id="t1", before=(newest[0].created_at, "l2"))
    assert [r.id for r in after] == ["l1", "l0"]
    # the per-status counts the dashboard shows, under the same filters
    assert await store.count_executions(tenant_id="t1") == {"running": 2, "failed": 1}
    assert await store.count_executions(tenant_id="t1", id_prefix="l1") == {"failed": 1}
    assert await store.count_executions(tenant_id="t3") == {}


async def test_one_live_checkpoint_per_agent_and_rollback_supersedes(store: Store) -> None:
    await store.create_execution(execution("e4"))
    assert await store.save_checkpoint(checkpoint("e4", "a"), handoffs=[handoff("e4")])
    assert not await store.save_checkpoint(checkpoint("e4", "a", {"other": 1}))  # no write
    assert len(await store.get_handoffs("e4")) == 1  # the conflicting batch left nothing
    assert [c.output for c in await store.get_checkpoints("e4")] == [{"a": "a"}]
    assert await store.supersede_checkpoints("e4", ["a"]) == 1
    assert await store.get_checkpoints("e4") == []
    assert await store.save_checkpoint(checkpoint("e4", "a", {"again": 2}))
    every = await store.get_checkpoints("e4", include_superseded=True)
    assert [(c.output, c.superseded) for c in every] == [({"a": "a"}, True),
                                                          ({"again": 2}, False)]


async def test_the_last_checkpoint_finishes_the_execution_in_its_transaction(
        store: Store) -> None:
    done = {"status": "completed", "decision": "approve", "result": {"decision": "approve"},
            "finished_at": 5.0, "lease_owner": None, "lease_expires_at": None}
    await store.create_execution(execution("f1"))
    claim = await store.claim_execution("w", 10)
    assert claim is not None
    epoch = claim[0].lease_epoch
    assert await store.save_checkpoint(checkpoint("f1", "a"), handoffs=[handoff("f1")],
                                       epoch=epoch, finish=done)
    rec = await store.get_execution("f1")
    assert rec is not None and (rec.status, rec.decision, rec.result, rec.finished_at,
                                rec.lease_owner) == ("completed", "approve",
                                                     {"decision": "approve"}, 5.0, None)
    # Not running (still queued here; cancelled, in a run): nothing at all is written.
    await store.create_execution(execution("f2"))
    with pytest.raises(ExecutionStateError):
        await store.save_checkpoint(checkpoint("f2", "a"), handoffs=[handoff("f2")],
                                    finish=done)
    assert await store.get_checkpoints("f2") == [] and await store.get_handoffs("f2") == []
    rec = await store.get_execution("f2")
    assert rec is not None and rec.status == "queued"
    # A stale epoch is still the fence's error, and writes nothing either.
    claim = await store.claim_execution("w", 10)
    assert claim is not None and claim[0].id == "f2"
    with pytest.raises(StaleLeaseError):
        await store.save_checkpoint(checkpoint("f2", "a"), epoch=claim[0].lease_epoch - 1,
                                    finish=done)
    assert await store.get_checkpoints("f2") == []
    rec = await store.get_execution("f2")
    assert rec is not None and rec.status == "running"


async def test_handoffs_and_events_round_trip_behind_the_fence(store: Store) -> None:
    await store.create_execution(execution("h1"))
    sent = [handoff("h1", "b"), handoff("h1", "c", status="failed")]
    await store.add_handoffs(sent, epoch=0)
    stored = await store.get_handoffs("h1")
    assert all(isinstance(h, HandoffRecord) and h.id is not None for h in stored)
    assert [replace(h, id=None) for h in stored] == sent
    await store.add_events([EventRecord("h1", "first", "a", {"n": 1}, 1.5),
                            EventRecord("h1", "second", None, {})])
    with pytest.raises(StaleLeaseError):  # another epoch owns it: nothing is written
        await store.add_events([EventRecord("h1", "stale", None, {})], epoch=7)
    with pytest.raises(StaleLeaseError):
        await store.add_handoffs([handoff("h1", "d")], epoch=7)
    events = await store.get_events("h1")
    assert [(e.type, e.agent_id, e.data) for e in events] == [("first", "a", {"n": 1}),
                                                              ("second", None, {})]
    assert events[0].ts == 1.5 and events[0].id is not None and events[0].id < events[1].id
    assert len(await store.get_handoffs("h1")) == 2
    await store.add_handoffs([])
    await store.add_events([])


async def test_consensus_review_happens_once(store: Store) -> None:
    await store.create_execution(execution("e5"))
    rec = ConsensusRecord("e5", "vote", {"votes": {"a": "approve", "b": "reject"}},
                          "manual_review", None, 0.5)
    await store.save_consensus(rec)
    assert await store.review_consensus("e5", "vote", "approve")
    assert not await store.review_consensus("e5", "vote", "reject")
    [saved] = await store.get_consensus("e5")
    assert (saved.reviewed_decision, saved.result["votes"]["b"]) == ("approve", "reject")


async def test_a_review_applies_once_and_all_at_once(store: Store) -> None:
    await store.create_execution(execution("r1", status="awaiting_review"))
    await store.save_consensus(ConsensusRecord("r1", "vote", {"votes": {}}, "manual_review",
                                               None, 0.5))
    vote = CheckpointRecord("r1", "vote", 1, 1, {"decision": "approve"}, 1.0, 2.0)
    review = EventRecord("r1", "review", None, {"decision": "approve"})
    assert await store.apply_review("r1", "approve", status="queued", events=[review],
                                    vote=vote, error=None)
    rec = await store.get_execution("r1")
    assert rec is not None and rec.status == "queued"
    [saved] = await store.get_consensus("r1")
    assert saved.reviewed_decision == "approve"
    assert [c.agent_id for c in await store.get_checkpoints("r1")] == ["vote"]
    # No longer awaiting review: a second review writes nothing at all.
    assert not await store.apply_review("r1", "reject", status="failed", events=[review])
    assert [e.type for e in await store.get_events("r1")] == ["review"]


async def test_a_cancel_records_its_event_and_an_ended_execution_refuses(store: Store) -> None:
    await store.create_execution(execution("c1", tenant_id="t"))
    assert await store.request_cancel("c1", "t") == "cancelled"
    [ev] = await store.get_events("c1")
    assert (ev.type, ev.data) == ("cancelled", {"from_status": "queued"})
    with pytest.raises(ExecutionStateError):
        await store.request_cancel("c1", "t")
    assert await store.request_cancel("c1", "other") is None


async def _history(store: Store, execution_id: str) -> None:
    """Two rows in each of an execution's lists, the usage billed to tenant "t"."""
    await store.create_tenant("t")
    await store.create_execution(execution(execution_id, tenant_id="t"))
    for agent in ("a", "b"):
        await store.save_checkpoint(checkpoint(execution_id, agent),
                                    handoffs=[handoff(execution_id, agent)],
                                    events=[EventRecord(execution_id, "done", agent, {})],
                                    consensus=ConsensusRecord(execution_id, agent, {"v": 1},
                                                              "approved", "yes", 1.0))
        await store.charge_usage(usage(f"{execution_id}-{agent}", "t", 3_000_000_000,
                                       execution_id=execution_id, agent_id=agent))


async def test_the_detail_is_typed_records_and_totals_in_ints(store: Store) -> None:
    await _history(store, "d1")
    assert await store.execution_detail("d1", "someone-else") is None
    whole = await store.execution_detail("d1", "t")
    assert isinstance(whole, ExecutionDetail) and whole.totals is None
    assert whole.execution.id == "d1" and whole.execution.inputs == {"x": 1}
    assert [c.agent_id for c in whole.checkpoints] == ["a", "b"]
    assert [h.to_agents for h in whole.handoffs] == [["a"], ["b"]]
    assert [v.decision for v in whole.consensus] == ["yes", "yes"]
    assert [e.type for e in whole.events] == ["done", "done"]
    assert [u.agent_id for u in whole.usage] == ["a", "b"]
    assert all(isinstance(u, UsageRecord) and u.estimated is False for u in whole.usage)
    first = await store.execution_detail("d1", "t", limit=1)
    assert first is not None
    assert [len(x) for x in (first.checkpoints, first.handoffs, first.consensus, first.events,
                             first.usage)] == [1] * 5
    # Over 2**32 nano-dollars: PostgreSQL's SUM over a BIGINT is a Decimal; the store's an int.
    assert first.totals == DetailTotals(2, 2, 2, 2, 2, 20, 40, 0, 6_000_000_000)
    assert all(type(v) is int for v in vars(first.totals).values())


async def test_each_list_of_the_detail_pages_by_id(store: Store) -> None:
    await _history(store, "p1")
    assert await store.execution_rows("p1", "someone-else", "events") is None
    for part in ("checkpoints", "handoffs", "consensus", "events", "usage"):
        whole = getattr(await store.execution_detail("p1", "t"), part)
        first = await store.execution_rows("p1", "t", part, limit=1)
        assert first == whole[:1], part
        assert first is not None and first[0].id is not None
        rest = await store.execution_rows("p1", "t", part, after=first[0].id)
        assert rest == whole[1:], part
