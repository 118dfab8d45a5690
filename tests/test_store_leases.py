"""``LeaseStore`` conformance: claims, leases and fencing, workers, on SQLite and
PostgreSQL."""

from __future__ import annotations

import asyncio
import time

import pytest

from omium.errors import StaleLeaseError
from omium.store import EventRecord, ExecutionRecord
from omium.store.base import Store
from tests._store_util import checkpoint, execution, handoff


async def test_a_checkpoint_lands_whole_with_its_handoff_and_events_or_not_at_all(
        store: Store) -> None:
    # On PostgreSQL the fence and the leading inserts are one statement: the same outcome.
    await store.create_execution(execution("w"))
    claim = await store.claim_execution("w1", 10)
    assert claim is not None
    epoch = claim[0].lease_epoch
    ev = [EventRecord("w", kind, "a", {"n": i}, time.time()) for i, kind in
          enumerate(("first", "second", "third"))]
    assert await store.save_checkpoint(checkpoint("w", "a", {"ok": 1}), [handoff("w", "a")],
                                       ev, epoch=epoch)
    with pytest.raises(StaleLeaseError):
        await store.save_checkpoint(checkpoint("w", "b"), [handoff("w", "b")],
                                    [EventRecord("w", "stale", "b", {}, time.time())],
                                    epoch=epoch - 1)
    assert [(c.agent_id, c.output) for c in await store.get_checkpoints("w")] == [
        ("a", {"ok": 1})]
    assert [h.to_agents for h in await store.get_handoffs("w")] == [["a"]]
    events = [e for e in await store.get_events("w") if e.type != "claimed"]
    assert [(e.type, e.data) for e in events] == [("first", {"n": 0}), ("second", {"n": 1}),
                                                  ("third", {"n": 2})]  # in the order given
    assert [e.id for e in events] == sorted(e.id for e in events)  # type: ignore[type-var]


async def test_claims_take_the_oldest_queued_execution_once(store: Store) -> None:
    for i in range(3):
        await store.create_execution(execution(f"q{i}"))
        await asyncio.sleep(0.002)
    claims = [await store.claim_execution("w1", 10) for _ in range(4)]
    assert [c[0].id if c else None for c in claims] == ["q0", "q1", "q2", None]
    rec, reclaimed = claims[0]  # type: ignore[misc]
    assert (rec.status, rec.lease_owner, rec.lease_epoch, reclaimed) == ("running", "w1", 1,
                                                                         False)


async def test_concurrent_claimers_never_share_an_execution(store: Store) -> None:
    for i in range(20):
        await store.create_execution(execution(f"c{i}"))
    got = await asyncio.gather(*(store.claim_execution(f"w{i}", 10) for i in range(30)))
    ids = [g[0].id for g in got if g]
    assert sorted(ids) == sorted(f"c{i}" for i in range(20))


async def test_expired_lease_is_reclaimed_and_the_old_epoch_is_fenced(store: Store) -> None:
    await store.create_execution(execution("x"))
    first = await store.claim_execution("w1", 0.05)
    assert first is not None
    old = first[0].lease_epoch
    assert await store.save_checkpoint(checkpoint("x", "a"), epoch=old)
    assert await store.claim_execution("w2", 10) is None  # lease still valid
    await asyncio.sleep(0.08)
    second = await store.claim_execution("w2", 10)
    assert second is not None and second[1] is True  # reclaimed
    new = second[0].lease_epoch
    assert new == old + 1
    with pytest.raises(StaleLeaseError):
        await store.save_checkpoint(checkpoint("x", "b"), epoch=old,
                                    events=[EventRecord("x", "stale", "b", {}, time.time())])
    with pytest.raises(StaleLeaseError):
        await store.update_execution("x", status="completed", epoch=old)
    assert await store.renew_lease("x", old, 10) == (False, False)
    # Nothing of the stale writes landed; the new owner writes normally.
    assert [c.agent_id for c in await store.get_checkpoints("x")] == ["a"]
    # Only the claims' own events (written by each claim): no "stale" one.
    events = await store.get_events("x")
    assert [(e.type, e.data) for e in events] == [
        ("claimed", {"worker": "w1", "epoch": old, "reclaimed": False}),
        ("claimed", {"worker": "w2", "epoch": new, "reclaimed": True}),
        ("failure_detected", {"failure_type": "worker_lost", "recoveries": 1})]
    assert await store.save_checkpoint(checkpoint("x", "b"), epoch=new)
    assert await store.update_execution("x", status="completed", epoch=new)
    cps = await store.get_checkpoints("x")
    assert [(c.agent_id, c.lease_epoch) for c in cps] == [("a", old), ("b", new)]


async def test_renew_release_and_cancel(store: Store) -> None:
    await store.create_execution(execution("r"))
    claim = await store.claim_execution("w", 10)
    assert claim is not None
    epoch = claim[0].lease_epoch
    assert await store.renew_lease("r", epoch, 10) == (True, False)
    assert await store.request_cancel("r", "local") == "cancelling"
    assert await store.renew_lease("r", epoch, 10) == (True, True)
    assert await store.request_cancel("r", "other-tenant") is None
    assert await store.release_lease("r", epoch)
    rec = await store.get_execution("r")
    assert rec is not None and (rec.status, rec.lease_owner) == ("queued", None)
    await store.create_execution(execution("q"))
    assert await store.request_cancel("q", "local") == "cancelled"
    assert await store.claim_execution("w", 10) is not None  # "r", requeued
    assert await store.claim_execution("w", 10) is None  # "q" was cancelled


async def test_cli_runs_without_a_lease_are_never_claimed(store: Store) -> None:
    await store.create_execution(ExecutionRecord("cli", "wf", {}, {}, status="running"))
    assert await store.claim_execution("w", 10) is None


async def test_queue_depth_counts_what_waits_for_a_worker(store: Store) -> None:
    assert await store.queue_depth() == 0
    for i in range(3):
        await store.create_execution(execution(f"d{i}"))
    await store.create_execution(execution("cli", status="running"))
    assert await store.queue_depth() == 3
    assert await store.claim_execution("w", 10) is not None
    assert await store.queue_depth() == 2


async def test_the_queue_signal_fires_for_whatever_queues_an_execution(store: Store) -> None:
    """Submits, requeues and released leases wake an idle worker of this process; a CLI run
    (created running), a repeated submit and a refused release do not."""
    signal = store.queue_signal()
    await store.create_execution(execution("cli", status="running"))
    assert not signal.is_set()
    await store.create_execution(execution("s"))
    assert signal.is_set()
    signal = store.queue_signal()  # the next one waits for the next queuing
    assert not signal.is_set()
    await store.create_execution(execution("s"))  # already there: nothing queued
    assert not signal.is_set()
    claimed = await store.claim_execution("w", 10)
    assert claimed is not None
    assert not await store.release_lease("s", claimed[0].lease_epoch + 1)  # not ours
    assert not signal.is_set()
    assert await store.release_lease("s", claimed[0].lease_epoch)
    assert signal.is_set()
    signal = store.queue_signal()
    assert await store.update_execution("cli", status="failed")
    assert not signal.is_set()
    assert await store.update_execution("cli", status="queued", expect_status=["failed"])
    assert signal.is_set()


async def test_workers_heartbeat(store: Store) -> None:
    await store.worker_heartbeat("w1", "host", 1, 2)
    await store.worker_heartbeat("w2", "host", 2, 0)
    assert await store.live_workers(5) == 2
    await store.worker_stopped("w2")
    assert await store.live_workers(5) == 1


async def test_resume_refuses_a_live_lease_and_takes_over_an_expired_one(store: Store) -> None:
    from omium import MultiAgentExecutor
    from omium.errors import ExecutionStateError

    definition = {"name": "wf", "agents": [
        {"id": "a", "definition": {"callable": "tests.agents_for_tests:echo"}}]}
    await store.create_execution(ExecutionRecord("owned", "wf", definition, {"x": 1}))
    claimed = await store.claim_execution("w", 10)
    assert claimed is not None
    async with MultiAgentExecutor(store) as ex:
        with pytest.raises(ExecutionStateError, match="lease held by w"):
            await ex.resume("owned")  # its worker is alive: running it here would run twice
    await store.create_execution(ExecutionRecord("lost", "wf", definition, {"x": 1}))
    lost = await store.claim_execution("w", 0.01)
    assert lost is not None
    await asyncio.sleep(0.03)  # its worker stopped renewing: the lease expired
    async with MultiAgentExecutor(store) as ex:
        result = await ex.resume("lost")
    assert result.status == "completed"
    rec = await store.get_execution("lost")
    assert rec is not None and rec.lease_epoch == lost[0].lease_epoch + 1
    with pytest.raises(StaleLeaseError):  # the old holder's writes land nowhere
        await store.add_events([EventRecord("lost", "late", None, {})],
                               epoch=lost[0].lease_epoch)
