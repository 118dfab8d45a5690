"""The REST service: cancel, resume, review, details, events, health and metrics."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI

from omium.api import Settings, create_app
from omium.api.auth import Authenticator
from omium.api.stream import EventDiff
from omium.engine.tenants import hash_key
from omium.store.migrations import HEAD
from omium.store.records import CheckpointRecord, ExecutionDetail, ExecutionRecord
from tests._api_harness import (
    ADMIN_H,
    V1,
    VOTE,
    Api,
    agent,
    parse_sse,
    sequential,
    serve,
)

# -- actions


async def test_cancel(api: Api) -> None:
    tid, h = await api.tenant("acme")
    ex = await api.submit(h, workflow=sequential())
    r = await api.client.post(f"{V1}/executions/{ex}/cancel", headers=h)
    assert r.status_code == 200 and r.json() == {"execution_id": ex, "status": "cancelled"}
    assert (await api.client.post(f"{V1}/executions/{ex}/cancel", headers=h)).status_code == 409
    # A running execution under a worker's lease is flagged for its worker.
    running = await api.submit(h, workflow=sequential())
    claimed = await api.store.claim_execution("worker-1", 30)
    assert claimed is not None and claimed[0].id == running
    r = await api.client.post(f"{V1}/executions/{running}/cancel", headers=h)
    assert r.status_code == 202 and r.json()["status"] == "cancelling"
    done = await api.submit(h, workflow=sequential(n=1))
    await api.drive(tid, done)
    assert (await api.client.post(f"{V1}/executions/{done}/cancel", headers=h)).status_code == 409
    assert (await api.client.post(f"{V1}/executions/ex_nope/cancel",
                                  headers=h)).status_code == 404


async def test_detail_of_a_completed_execution(api: Api) -> None:
    tid, h = await api.tenant("acme")
    ex = await api.submit(h, workflow=sequential(), inputs={"n": 1})
    result = await api.drive(tid, ex)
    assert result.status == "completed"
    r = await api.client.get(f"{V1}/executions/{ex}", headers=h)
    assert r.status_code == 200
    d = r.json()
    assert d["id"] == ex and d["status"] == "completed" and d["inputs"] == {"n": 1}
    assert d["finished_at"] is not None and d["failure"] is None
    assert set(d["result"]["results"]) == {"a0", "a1", "a2"}
    assert d["result"]["output"]["agent"] == "a2"
    assert [s["agent_id"] for s in d["steps"]] == ["a0", "a1", "a2"]
    assert all(s["status"] == "done" and s["attempt"] == 1 and s["duration_s"] >= 0
               for s in d["steps"])
    assert d["checkpoints"][0]["output"] == {"agent": "a0", "seen": {"n": 1}}
    assert [(x["from_agent"], x["to_agents"], x["status"]) for x in d["handoffs"]] == [
        ("a0", ["a1"], "success"), ("a1", ["a2"], "success")]
    assert d["usage"] == {"calls": 0, "prompt_tokens": 0, "completion_tokens": 0,
                          "cached_tokens": 0, "cost_usd": "0", "records": []}
    # Run in this process, under its own lease (epoch 1), given up when it completed.
    assert d["lease"] == {"owner": None, "epoch": 1, "expires_at": None}
    assert d["consensus"] == [] and isinstance(d["events"], list)


async def test_failed_execution_detail_and_resume(api: Api) -> None:
    tid, h = await api.tenant("acme")
    wf = {"name": "fails", "agents": [agent("a", "tests.agents_for_tests:boom",
                                            retry={"max_attempts": 1})]}
    ex = await api.submit(h, workflow=wf)
    assert (await api.drive(tid, ex)).status == "failed"
    d = (await api.client.get(f"{V1}/executions/{ex}", headers=h)).json()
    assert d["failure"]["failed_agent"] == "a"
    assert d["failure"]["failure_type"] == "exception"
    assert "agent exploded" in d["failure"]["error"]
    assert any(e["type"] == "failure_detected" for e in d["events"])
    r = await api.client.post(f"{V1}/executions/{ex}/resume", headers=h)
    assert r.status_code == 202 and r.json() == {"execution_id": ex, "status": "queued"}
    assert (await api.client.post(f"{V1}/executions/ex_nope/resume",
                                  headers=h)).status_code == 404


async def test_review_flow(api: Api) -> None:
    tid, h = await api.tenant("acme")
    ex = await api.submit(h, workflow=VOTE)
    assert (await api.drive(tid, ex)).status == "awaiting_review"
    d = (await api.client.get(f"{V1}/executions/{ex}", headers=h)).json()
    assert d["status"] == "awaiting_review"
    assert d["consensus"][0]["outcome"] == "manual_review"
    url = f"{V1}/executions/{ex}/review"
    # a split vote takes approve or reject (any text answers only an agent's own request)
    bad = await api.client.post(url, json={"decision": "maybe"}, headers=h)
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == "decision", bad.text
    assert "approve or reject" in bad.json()["detail"][0]["msg"]
    assert (await api.client.post(url, json={"decision": ""}, headers=h)).status_code == 422
    r = await api.client.post(url, json={"decision": "approve", "reviewer": "ann"}, headers=h)
    assert r.status_code == 202 and r.json() == {"execution_id": ex, "status": "queued"}
    assert (await api.client.post(url, json={"decision": "approve"}, headers=h)).status_code == 409
    # The worker's part: the run continues and completes with the reviewed decision.
    result = await api.drive(tid, ex)
    assert result.status == "completed" and result.decision == "approve"


# -- server-sent events


async def test_event_stream_of_a_running_execution(api: Api, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMIUM_TEST_EFFECTS", str(tmp_path / "effects.jsonl"))
    monkeypatch.setenv("OMIUM_TEST_STEP_S", "0.15")
    tid, h = await api.tenant("acme")
    ex = await api.submit(h, workflow=sequential(fn="tests.agents_for_tests:side_effect"))
    runner = asyncio.create_task(api.drive(tid, ex))
    r = await api.client.get(f"{V1}/executions/{ex}/events", headers=h)
    await runner
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    events = parse_sse(r.text)
    kinds = [k for k, _ in events]
    assert [d["agent_id"] for k, d in events if k == "checkpoint"] == ["a0", "a1", "a2"]
    assert [d["agent_id"] for k, d in events if k == "agent_started"] == ["a0", "a1", "a2"]
    assert kinds.count("handoff") == 2
    assert ("status", {"status": "running"}) in events
    assert kinds[-1] == "finished" and kinds.count("finished") == 1
    assert events[-1][1]["status"] == "completed"
    # Each agent starts before it finishes.
    assert kinds.index("agent_started") < kinds.index("checkpoint")
    # A stream of a finished execution replays what happened and closes at once.
    again = parse_sse((await api.client.get(f"{V1}/executions/{ex}/events", headers=h)).text)
    assert [k for k, _ in again].count("checkpoint") == 3
    assert again[-1] == ("finished", events[-1][1])


# -- health, metrics, OpenAPI, startup hooks


async def test_health_and_readiness(api: Api, tmp_path: Path) -> None:
    assert (await api.client.get("/health")).json() == {"status": "ok"}
    r = await api.client.get("/health/ready")
    assert r.status_code == 200, r.text
    assert r.json()["checks"]["migrations"] == {"ok": True, "revision": HEAD,
                                                "expected": HEAD}
    async with serve(f"sqlite:///{tmp_path}/w.db", workers_expected=True) as with_workers:
        r = await with_workers.client.get("/health/ready")
        assert r.status_code == 503
        assert r.json()["checks"]["workers"] == {"ok": False, "live": 0}
        await with_workers.store.worker_heartbeat("w1", "host", 1, 0)
        r = await with_workers.client.get("/health/ready")
        assert r.status_code == 200 and r.json()["checks"]["workers"]["live"] == 1


async def test_metrics_and_openapi(api: Api) -> None:
    _, h = await api.tenant("metered")
    await api.submit(h, workflow=sequential())
    r = await api.client.get("/metrics", headers=ADMIN_H)  # metrics name tenants: admin only
    assert r.status_code == 200
    assert ('omium_executions_started_total{framework="python",tenant_id="metered"} 1.0'
            in r.text)
    assert "omium_queue_depth 1.0" in r.text
    paths = (await api.client.get("/openapi.json")).json()["paths"]
    for path in ("/api/v1/workflows", "/api/v1/workflows/{workflow_id}", "/api/v1/executions",
                 "/api/v1/executions/{execution_id}", "/api/v1/executions/{execution_id}/events",
                 "/api/v1/executions/{execution_id}/cancel",
                 "/api/v1/executions/{execution_id}/resume",
                 "/api/v1/executions/{execution_id}/review", "/api/v1/tenants",
                 "/api/v1/tenants/{tenant_id}/keys", "/health", "/health/ready", "/metrics"):
        assert path in paths
    r = await api.client.get("/nowhere")
    assert r.status_code == 404 and r.json() == {"detail": "Not Found"}


async def test_startup_hooks_run_and_stop(tmp_path: Path) -> None:
    calls: list[str] = []

    async def hook(app: FastAPI) -> Any:
        calls.append(f"start:{app.state.store is not None}")

        async def stop() -> None:
            calls.append("stop")
        return stop

    app = create_app(Settings(database_url=f"sqlite:///{tmp_path}/h.db"))
    app.state.on_startup_extra.append(hook)
    async with app.router.lifespan_context(app):
        assert calls == ["start:True"]
    assert calls == ["start:True", "stop"]


# -- units: derived stream events, the key cache


def _snapshot(status: str, done: list[str]) -> ExecutionDetail:
    cps = [CheckpointRecord("e", a, i, 1, {}, 0.0, 1.0) for i, a in enumerate(done)]
    return ExecutionDetail(ExecutionRecord("e", "wf", {}, {}, status=status), cps, [], [], [],
                           [])


def test_agent_started_is_derived_from_the_graph() -> None:
    diff = EventDiff({"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"]})

    def started(snapshot: ExecutionDetail) -> list[str]:
        return [d["agent_id"] for k, d in diff.step(snapshot) if k == "agent_started"]

    assert started(_snapshot("queued", [])) == []
    assert started(_snapshot("running", [])) == ["a"]
    assert started(_snapshot("running", ["a"])) == ["b", "c"]
    assert started(_snapshot("running", ["a", "c"])) == []
    assert started(_snapshot("running", ["a", "c", "b"])) == ["d"]
    last = diff.step(_snapshot("completed", ["a", "c", "b", "d"]))
    assert [k for k, _ in last] == ["checkpoint", "status", "finished"] and diff.finished


async def test_key_cache_is_bounded(api: Api) -> None:
    auth = Authenticator(max_entries=2)
    keys = []
    for name in ("t1", "t2", "t3"):
        _, h = await api.tenant(name)
        keys.append(h["Authorization"].split(" ", 1)[1])
        assert (await auth.principal(api.store, keys[-1])) is not None
        assert len(auth._cache) <= 2
    assert hash_key(keys[0]) not in auth._cache and hash_key(keys[2]) in auth._cache
