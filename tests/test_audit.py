"""The audit trail records only what happened, and an idempotency key names one request.

Events are written in the transaction of the change they describe: a review, resume or cancel
that was refused (it lost a race) leaves no event, no reviewed vote and no checkpoint behind.
Every test runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from omium.store import URL_ENV, open_store
from omium.store.base import Store
from omium.store.records import CheckpointRecord, EventRecord
from tests._api_harness import LOAN, V1, VOTE, Api, agent, sequential
from tests.test_cli import EXAMPLE, omium, run_json

N = 20
# A failure paused for a human: the agent fails once and waits for review.
PAUSED = {"name": "paused", "agents": [agent("a", "tests.agents_for_tests:boom",
                                             on_failure="manual_review",
                                             retry={"max_attempts": 1})]}
FAILS = {"name": "fails", "agents": [agent("a", "tests.agents_for_tests:boom",
                                           retry={"max_attempts": 1})]}


async def _types(store: Store, execution_id: str) -> Counter[str]:
    return Counter(e.type for e in await store.get_events(execution_id))


async def _at(api: Api, h: dict[str, str], tid: str, wf: dict[str, Any], status: str) -> str:
    ex = await api.submit(h, workflow=wf)
    assert (await api.drive(tid, ex)).status == status
    return ex


async def _concurrently(api: Api, n: int, url: str, h: dict[str, str],
                        body: Any = None) -> list[httpx.Response]:
    return list(await asyncio.gather(*(api.client.post(url, json=body, headers=h)
                                       for _ in range(n))))


# -- review


async def test_concurrent_reviews_of_a_split_vote_record_one_review(any_api: Api) -> None:
    tid, h = await any_api.tenant("acme")
    ex = await _at(any_api, h, tid, VOTE, "awaiting_review")
    before = await _types(any_api.store, ex)
    rs = await _concurrently(any_api, N, f"{V1}/executions/{ex}/review", h,
                             {"decision": "approve", "reviewer": "ann"})
    assert sorted(r.status_code for r in rs) == [202] + [409] * (N - 1)
    assert all("not awaiting_review" in r.json()["detail"] for r in rs if r.status_code == 409)
    new = await _types(any_api.store, ex) - before
    assert new == Counter({"review": 1, "recovery_succeeded": 1})
    [vote] = await any_api.store.get_consensus(ex)
    assert vote.reviewed_decision == "approve"
    # The worker finds the reviewed vote and finishes with it.
    result = await any_api.drive(tid, ex)
    assert (result.status, result.decision) == ("completed", "approve")


@pytest.mark.parametrize(("decision", "status"), [("approve", "queued"),
                                                  ("reject", "failed")])
async def test_concurrent_reviews_of_a_paused_failure_record_one_review(
        any_api: Api, decision: str, status: str) -> None:
    tid, h = await any_api.tenant("acme")
    ex = await _at(any_api, h, tid, PAUSED, "awaiting_review")
    before = await _types(any_api.store, ex)
    rs = await _concurrently(any_api, N, f"{V1}/executions/{ex}/review", h,
                             {"decision": decision})
    assert sorted(r.status_code for r in rs) == [202] + [409] * (N - 1)
    assert [r.json()["status"] for r in rs if r.status_code == 202] == [status]
    assert await _types(any_api.store, ex) - before == Counter({"review": 1})


async def test_cancel_racing_a_review_leaves_all_of_the_review_or_none(any_api: Api) -> None:
    tid, h = await any_api.tenant("acme")
    for _ in range(6):
        ex = await _at(any_api, h, tid, VOTE, "awaiting_review")
        before = await _types(any_api.store, ex)
        review, cancel = await asyncio.gather(
            any_api.client.post(f"{V1}/executions/{ex}/review", json={"decision": "approve"},
                                headers=h),
            any_api.client.post(f"{V1}/executions/{ex}/cancel", headers=h))
        # Awaiting review and queued (reviewed first) can both be cancelled at once.
        assert (cancel.status_code, cancel.json()["status"]) == (200, "cancelled")
        assert (await any_api.store.get_execution(ex)).status == "cancelled"  # type: ignore[union-attr]
        new = await _types(any_api.store, ex) - before
        [vote] = await any_api.store.get_consensus(ex)
        vote_checkpoints = [c for c in await any_api.store.get_checkpoints(ex)
                            if c.agent_id == vote.node_id]
        if review.status_code == 409:  # the cancel came first: nothing of the review
            assert new == Counter({"cancelled": 1})
            assert vote.reviewed_decision is None and vote_checkpoints == []
        else:  # the review came first: all of it, then the cancel of the queued run
            assert review.status_code == 202
            assert new == Counter({"review": 1, "recovery_succeeded": 1, "cancelled": 1})
            assert vote.reviewed_decision == "approve" and len(vote_checkpoints) == 1


async def test_a_review_that_lost_to_a_cancel_writes_nothing(any_api: Api) -> None:
    """The store's half of the race, made deterministic: the reviewer read "awaiting review",
    then the cancel committed, then the review's transaction runs."""
    tid, h = await any_api.tenant("acme")
    ex = await _at(any_api, h, tid, VOTE, "awaiting_review")
    store = any_api.store
    [vote] = await store.get_consensus(ex)
    assert await store.request_cancel(ex, tid) == "cancelled"
    before = await _types(store, ex)
    now = time.time()
    applied = await store.apply_review(
        ex, "approve", status="queued", vote=CheckpointRecord(
            ex, vote.node_id, 2, 1, {"decision": "approve"}, now, now),
        events=[EventRecord(ex, "recovery_succeeded", vote.node_id, {}, now),
                EventRecord(ex, "review", None, {"decision": "approve"}, now)])
    assert applied is False
    assert await _types(store, ex) == before
    [vote] = await store.get_consensus(ex)
    assert vote.reviewed_decision is None
    assert [c.agent_id for c in await store.get_checkpoints(ex)] == ["yes", "no"]
    assert (await store.get_execution(ex)).status == "cancelled"  # type: ignore[union-attr]


async def test_a_refused_status_change_writes_no_event(store: Store) -> None:
    from tests._store_util import execution

    await store.create_execution(execution("e1"))
    assert not await store.update_execution("e1", status="queued", expect_status=["failed"],
                                            events=[EventRecord("e1", "resumed", None, {})])
    assert not await store.update_execution("missing", status="queued",
                                            events=[EventRecord("e1", "resumed", None, {})])
    assert await store.get_events("e1") == []


# -- resume


async def test_concurrent_resumes_requeue_once(any_api: Api) -> None:
    tid, h = await any_api.tenant("acme")
    ex = await _at(any_api, h, tid, FAILS, "failed")
    before = await _types(any_api.store, ex)
    rs = await _concurrently(any_api, N, f"{V1}/executions/{ex}/resume", h)
    # Every caller is told the truth: it is queued (once).
    assert [(r.status_code, r.json()["status"]) for r in rs] == [(202, "queued")] * N
    assert await _types(any_api.store, ex) - before == Counter({"resumed": 1})


async def test_concurrent_cli_style_resumes_record_one_resumed_event(store: Store) -> None:
    """drive=True (the CLI): the losers get ExecutionStateError and write nothing."""
    from omium.engine.executor import MultiAgentExecutor

    ex = MultiAgentExecutor(store)
    assert (await ex.execute("f1", FAILS)).status == "failed"
    before = await _types(store, "f1")
    results = await asyncio.gather(*(MultiAgentExecutor(store).resume("f1") for _ in range(5)),
                                   return_exceptions=True)
    outcomes = Counter(type(r).__name__ for r in results)
    assert outcomes["ExecutionResult"] >= 1
    assert set(outcomes) <= {"ExecutionResult", "ExecutionStateError"}
    # Each successful resume re-ran the failing agent from "failed": one event per run.
    assert (await _types(store, "f1") - before)["resumed"] == outcomes["ExecutionResult"]


# -- cancel


@pytest.mark.parametrize("status", ["queued", "failed", "awaiting_review"])
async def test_cancel_records_one_cancelled_event(any_api: Api, status: str) -> None:
    tid, h = await any_api.tenant("acme")
    if status == "queued":
        ex = await any_api.submit(h, workflow=sequential())
    else:
        ex = await _at(any_api, h, tid, FAILS if status == "failed" else VOTE, status)
    before = await _types(any_api.store, ex)
    rs = await _concurrently(any_api, 5, f"{V1}/executions/{ex}/cancel", h)
    assert sorted(r.status_code for r in rs) == [200] + [409] * 4
    assert all("cancelled already" in r.json()["detail"] for r in rs if r.status_code == 409)
    assert await _types(any_api.store, ex) - before == Counter({"cancelled": 1})
    [event] = [e for e in await any_api.store.get_events(ex) if e.type == "cancelled"]
    assert event.data == {"from_status": status}


async def test_a_refused_cancel_records_nothing(any_api: Api) -> None:
    tid, h = await any_api.tenant("acme")
    ex = await _at(any_api, h, tid, sequential(n=1), "completed")
    before = await _types(any_api.store, ex)
    r = await any_api.client.post(f"{V1}/executions/{ex}/cancel", headers=h)
    assert r.status_code == 409 and "completed already" in r.json()["detail"]
    assert await _types(any_api.store, ex) == before
    assert (await any_api.store.get_execution(ex)).status == "completed"  # type: ignore[union-attr]


def test_cli_cancel_records_the_event(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = f"sqlite:///{tmp_path}/cli.db"
    monkeypatch.setenv(URL_ENV, db)
    code, _ = run_json("run", EXAMPLE / "parallel.yaml", "--execution-id", "c1")
    assert code == 3
    code, out = omium("executions", "cancel", "c1", "--json")
    assert code == 0, out

    async def types() -> Counter[str]:
        async with open_store(db) as store:
            return await _types(store, "c1")

    assert asyncio.run(types())["cancelled"] == 1
    code, out = omium("executions", "cancel", "c1")
    assert code == 2 and "is cancelled already" in out
    assert asyncio.run(types())["cancelled"] == 1


# -- idempotency keys


async def _post(api: Api, h: dict[str, str], **body: Any) -> httpx.Response:
    return await api.client.post(f"{V1}/executions", json=body, headers=h)


async def test_same_key_and_body_returns_the_same_execution(any_api: Api) -> None:
    _, h = await any_api.tenant("acme")
    first = await _post(any_api, h, workflow=LOAN, inputs={"applicant": {"a": 1, "b": 2}},
                        idempotency_key="k1")
    assert first.status_code == 202
    # The same inline definition is the same workflow id; key order in inputs does not count.
    again = await _post(any_api, h, workflow=LOAN, inputs={"applicant": {"b": 2, "a": 1}},
                        idempotency_key="k1")
    assert again.status_code == 200
    assert again.json()["execution_id"] == first.json()["execution_id"]
    wf_id = (await any_api.store.get_execution(first.json()["execution_id"])).workflow_id  # type: ignore[union-attr]
    by_id = await _post(any_api, h, workflow_id=wf_id, inputs={"applicant": {"a": 1, "b": 2}},
                        idempotency_key="k1")
    assert (by_id.status_code, by_id.json()["execution_id"]) == (200,
                                                                 first.json()["execution_id"])


async def test_same_key_with_another_body_is_a_409_naming_the_key(any_api: Api) -> None:
    _, h = await any_api.tenant("acme")
    first = await _post(any_api, h, workflow=LOAN, inputs={"applicant": {"a": 1}},
                        idempotency_key="order-42")
    assert first.status_code == 202
    for body in ({"workflow": LOAN, "inputs": {"applicant": {"a": 2}}},
                 {"workflow": LOAN, "inputs": {"applicant": {"a": True}}},  # 1 is not true
                 {"workflow": {**LOAN, "name": "loan2"}, "inputs": {"applicant": {"a": 1}}}):
        r = await _post(any_api, h, idempotency_key="order-42", **body)
        assert r.status_code == 409, r.text
        assert "'order-42'" in r.json()["detail"]
    assert len(await any_api.store.list_executions()) == 1
    # Keys are per tenant: another tenant's same key is its own execution.
    _, other = await any_api.tenant("other")
    r = await _post(any_api, other, workflow=LOAN, inputs={"applicant": {"a": 2}},
                    idempotency_key="order-42")
    assert r.status_code == 202


async def test_concurrent_submissions_with_one_key_and_body_make_one_execution(
        any_api: Api) -> None:
    _, h = await any_api.tenant("acme")
    rs = await asyncio.gather(*(_post(any_api, h, workflow=sequential(), inputs={"n": 1},
                                      idempotency_key="same") for _ in range(N)))
    assert sorted(r.status_code for r in rs) == [200] * (N - 1) + [202]
    assert len({r.json()["execution_id"] for r in rs}) == 1
    assert len(await any_api.store.list_executions()) == 1


async def test_concurrent_submissions_with_one_key_and_other_bodies_conflict(
        any_api: Api) -> None:
    _, h = await any_api.tenant("acme")
    rs = await asyncio.gather(*(_post(any_api, h, workflow=sequential(), inputs={"n": i},
                                      idempotency_key="race") for i in range(N)))
    assert sorted(r.status_code for r in rs) == [202] + [409] * (N - 1)
    [winner] = [r for r in rs if r.status_code == 202]
    [stored] = await any_api.store.list_executions()
    assert stored.id == winner.json()["execution_id"]
    assert all("'race'" in r.json()["detail"] for r in rs if r.status_code == 409)
