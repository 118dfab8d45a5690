"""The REST service, in-process: httpx over ASGI with the app's lifespan running.

Nothing here runs a worker: an execution the API queued is driven to its end by
``MultiAgentExecutor.resume`` (what a worker does, minus the lease).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from omium.api import Settings, create_app
from omium.api.auth import Authenticator, generate_key, hash_key, tenant_slug
from omium.api.stream import EventDiff
from omium.engine.executor import MultiAgentExecutor
from omium.engine.result import ExecutionResult
from omium.store.base import Store

ADMIN = "admin-secret-for-tests"
ADMIN_H = {"Authorization": f"Bearer {ADMIN}"}
V1 = "/api/v1"
ECHO = "tests.agents_for_tests:echo"


@dataclass
class Api:
    app: FastAPI
    client: httpx.AsyncClient

    @property
    def store(self) -> Store:
        return self.app.state.store

    async def tenant(self, name: str) -> tuple[str, dict[str, str]]:
        r = await self.client.post(f"{V1}/tenants", json={"name": name}, headers=ADMIN_H)
        assert r.status_code == 201, r.text
        body = r.json()
        return body["tenant_id"], {"Authorization": f"Bearer {body['api_key']}"}

    async def submit(self, headers: dict[str, str], **body: Any) -> str:
        r = await self.client.post(f"{V1}/executions", json=body, headers=headers)
        assert r.status_code == 202, r.text
        assert r.json()["status"] == "queued"
        return str(r.json()["execution_id"])

    async def drive(self, tenant: str, execution_id: str) -> ExecutionResult:
        """Run a queued execution here, as a worker would."""
        executor = MultiAgentExecutor(self.store, tenant_id=tenant)
        return await executor.resume(execution_id, tenant_id=tenant)


@asynccontextmanager
async def serve(url: str, **settings: Any) -> AsyncIterator[Api]:
    app = create_app(Settings(database_url=url, admin_key=ADMIN, **settings))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            yield Api(app, client)


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    async with serve(f"sqlite:///{tmp_path}/api.db", max_body_bytes=64 * 1024,
                     sse_poll_s=0.05) as a:
        yield a


@pytest.fixture
async def any_api(database_url: str) -> AsyncIterator[Api]:
    """The service on SQLite and on PostgreSQL."""
    async with serve(database_url) as a:
        yield a


def agent(agent_id: str, fn: str = ECHO, **extra: Any) -> dict[str, Any]:
    return {"id": agent_id, "framework": "python", "definition": {"callable": fn}, **extra}


def sequential(name: str = "seq", n: int = 3, fn: str = ECHO, **extra: Any) -> dict[str, Any]:
    return {"name": name, "agents": [agent(f"a{i}", fn) for i in range(n)], **extra}


LOAN = {"name": "loan", "agents": [agent("kyc", input_schema={
    "type": "object", "required": ["applicant"],
    "properties": {"applicant": {"type": "object"}}})]}

VOTE = {"name": "vote", "execution_order": "parallel",
        "agents": [agent("yes", "tests.agents_for_tests:approve"),
                   agent("no", "tests.agents_for_tests:reject")],
        "consensus": {"strategy": "unanimous", "field": "decision"}}


def parse_sse(text: str) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for block in text.split("\n\n"):
        if not block.strip() or block.startswith(":"):
            continue
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        out.append((fields["event"], json.loads(fields["data"])))
    return out


# -- authentication and tenants


async def test_requests_without_a_valid_key_are_401(api: Api) -> None:
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic abc"}):
        r = await api.client.get(f"{V1}/executions", headers=headers)
        assert r.status_code == 401
        assert r.headers["www-authenticate"] == "Bearer"
        assert isinstance(r.json()["detail"], str)
    _, h = await api.tenant("acme")
    assert (await api.client.get(f"{V1}/executions", headers=h)).status_code == 200
    # The admin key manages tenants but is no tenant; a tenant key is no admin.
    assert (await api.client.get(f"{V1}/executions", headers=ADMIN_H)).status_code == 403
    assert (await api.client.get(f"{V1}/tenants", headers=h)).status_code == 403


async def test_revoked_key_is_refused_once_the_cache_forgets_it(api: Api) -> None:
    _, h = await api.tenant("acme")
    url = f"{V1}/workflows"
    assert (await api.client.get(url, headers=h)).status_code == 200
    key_hash = hash_key(h["Authorization"].split(" ", 1)[1])
    assert await api.store.revoke_api_key(key_hash)
    # Verified keys are cached for auth_cache_s (30 s): documented revocation delay.
    assert (await api.client.get(url, headers=h)).status_code == 200
    api.app.state.auth.forget(key_hash)
    assert (await api.client.get(url, headers=h)).status_code == 401


async def test_tenant_management(api: Api) -> None:
    tid, _ = await api.tenant("Acme Corp")
    assert tid == "acme-corp" and tenant_slug("acme_2") == "acme_2"
    r = await api.client.post(f"{V1}/tenants", json={"name": "acme-corp"}, headers=ADMIN_H)
    assert r.status_code == 409
    r = await api.client.post(f"{V1}/tenants", json={"name": "!!!"}, headers=ADMIN_H)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "name"]
    r = await api.client.post(f"{V1}/tenants/{tid}/keys", headers=ADMIN_H)
    assert r.status_code == 201
    second = {"Authorization": f"Bearer {r.json()['api_key']}"}
    assert (await api.client.get(f"{V1}/workflows", headers=second)).status_code == 200
    assert (await api.client.post(f"{V1}/tenants/ghost/keys",
                                  headers=ADMIN_H)).status_code == 404
    r = await api.client.get(f"{V1}/tenants", headers=ADMIN_H)
    acme = {t["id"]: t for t in r.json()}["acme-corp"]  # "local" (the CLI's) is there too
    assert acme["name"] == "Acme Corp" and acme["balance_credits"] == "0" and acme["limited"]
    # A key row with admin=1 is an admin too.
    key, key_hash, prefix = generate_key()
    await api.store.create_api_key(key_hash, prefix, None, admin=True)
    r = await api.client.get(f"{V1}/tenants", headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 200


async def test_a_tenant_cannot_see_another_tenants_things(any_api: Api) -> None:
    api = any_api
    _, a = await api.tenant("alpha")
    _, b = await api.tenant("beta")
    wf = (await api.client.post(f"{V1}/workflows", json=sequential(), headers=a)).json()["id"]
    ex = await api.submit(a, workflow_id=wf)
    for method, path in (("GET", f"/executions/{ex}"), ("GET", f"/executions/{ex}/events"),
                         ("POST", f"/executions/{ex}/cancel"),
                         ("POST", f"/executions/{ex}/resume"), ("GET", f"/workflows/{wf}")):
        r = await api.client.request(method, V1 + path, headers=b)
        assert r.status_code == 404, (path, r.text)
    # Not through the plan cache either (alpha's submission cached the workflow).
    r = await api.client.post(f"{V1}/executions", json={"workflow_id": wf}, headers=b)
    assert r.status_code == 404
    r = await api.client.post(f"{V1}/executions/{ex}/review", json={"decision": "approve"},
                              headers=b)
    assert r.status_code == 404
    assert (await api.client.get(f"{V1}/executions", headers=b)).json()["items"] == []
    assert (await api.client.get(f"{V1}/workflows", headers=b)).json()["items"] == []
    assert (await api.client.get(f"{V1}/executions/{ex}", headers=a)).status_code == 200


# -- workflows


async def test_register_workflow_and_validation_errors(api: Api) -> None:
    _, h = await api.tenant("acme")
    r = await api.client.post(f"{V1}/workflows", json=sequential(), headers=h)
    assert r.status_code == 201
    created = r.json()
    assert created["name"] == "seq" and created["id"].startswith("seq@")
    again = await api.client.post(f"{V1}/workflows", json=sequential(), headers=h)
    assert again.json()["id"] == created["id"]  # immutable by content
    r = await api.client.get(f"{V1}/workflows/{created['id']}", headers=h)
    assert r.json()["definition"]["agents"][0]["definition"] == {"callable": ECHO}
    r = await api.client.get(f"{V1}/workflows", headers=h)
    assert [w["id"] for w in r.json()["items"]] == [created["id"]]

    bad = {"name": "bad", "agents": [{"id": "a", "framework": "nope"},
                                     agent("b", "tests.agents_for_tests:missing")]}
    r = await api.client.post(f"{V1}/workflows", json=bad, headers=h)
    assert r.status_code == 422
    locs = [d["loc"] for d in r.json()["detail"]]
    assert "agents[0] (a).framework" in locs
    assert any(loc.startswith("agents[1] (b).") for loc in locs)
    r = await api.client.post(f"{V1}/workflows", json={**sequential(), "base_dir": "/tmp"},
                              headers=h)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == "base_dir"
    r = await api.client.post(f"{V1}/workflows", json=[1, 2], headers=h)
    assert r.status_code == 422
    assert (await api.client.get(f"{V1}/workflows/nope@1", headers=h)).status_code == 404


# -- submissions


async def test_submit_queues_and_idempotency_key_returns_the_same(any_api: Api) -> None:
    api = any_api
    tid, h = await api.tenant("acme")
    wf = (await api.client.post(f"{V1}/workflows", json=sequential(), headers=h)).json()["id"]
    first = await api.submit(h, workflow_id=wf, idempotency_key="order-1")
    assert first.startswith("ex_")
    r = await api.client.post(f"{V1}/executions", headers=h,
                              json={"workflow_id": wf, "idempotency_key": "order-1"})
    assert r.status_code == 200 and r.json() == {"execution_id": first, "status": "queued"}
    other = await api.submit(h, workflow_id=wf, idempotency_key="order-2")
    inline = await api.submit(h, workflow=sequential(), inputs={"x": 1})
    assert len({first, other, inline}) == 3
    rec = await api.store.get_execution(inline)
    assert rec is not None and rec.tenant_id == tid and rec.workflow_id == wf
    assert rec.inputs == {"x": 1} and rec.status == "queued"


async def test_submit_validation(api: Api) -> None:
    _, h = await api.tenant("acme")
    url = f"{V1}/executions"
    wf = (await api.client.post(f"{V1}/workflows", json=LOAN, headers=h)).json()["id"]
    r = await api.client.post(url, json={"workflow_id": wf, "inputs": {"applicant": 5}},
                              headers=h)
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == "inputs.applicant"
    # Defaults: the workflow's inputs, else {} (which misses the required field).
    r = await api.client.post(url, json={"workflow_id": wf}, headers=h)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == "inputs"
    await api.submit(h, workflow={**LOAN, "inputs": {"applicant": {"name": "A"}}})
    for body in ({}, {"workflow_id": wf, "workflow": LOAN}, {"workflow_id": wf, "x": 1}):
        assert (await api.client.post(url, json=body, headers=h)).status_code == 422
    r = await api.client.post(url, json={"workflow": {"agents": []}}, headers=h)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == "agents"
    assert (await api.client.post(url, json={"workflow_id": "x@1"},
                                  headers=h)).status_code == 404
    assert await api.store.list_executions(limit=10) != []  # only the valid one
    assert len(await api.store.list_executions(limit=10)) == 1


async def test_oversized_bodies_are_413(api: Api) -> None:
    _, h = await api.tenant("acme")
    big = json.dumps({"name": "x" * (70 * 1024)}).encode()
    r = await api.client.post(f"{V1}/workflows", content=big,
                              headers={**h, "Content-Type": "application/json"})
    assert r.status_code == 413 and "exceeds" in r.json()["detail"]

    async def chunks(data: bytes, size: int = 4096) -> AsyncIterator[bytes]:
        for i in range(0, len(data), size):
            yield data[i:i + size]

    r = await api.client.post(f"{V1}/workflows", content=chunks(big),
                              headers={**h, "Content-Type": "application/json"})
    assert "content-length" not in r.request.headers
    assert r.status_code == 413 and "exceeds" in r.json()["detail"]
    # A small chunked body still gets through.
    r = await api.client.post(f"{V1}/workflows", content=chunks(json.dumps(sequential())
                                                                .encode(), 16),
                              headers={**h, "Content-Type": "application/json"})
    assert r.status_code == 201


# -- listing


async def test_list_executions_keyset_pagination(any_api: Api) -> None:
    api = any_api
    _, h = await api.tenant("acme")
    wf = (await api.client.post(f"{V1}/workflows", json=sequential(), headers=h)).json()["id"]
    ids = [await api.submit(h, workflow_id=wf) for _ in range(7)]
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        r = await api.client.get(f"{V1}/executions", params=params, headers=h)
        assert r.status_code == 200
        seen += [item["id"] for item in r.json()["items"]]
        pages += 1
        cursor = r.json()["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert seen == ids[::-1]  # newest first, each once
    r = await api.client.get(f"{V1}/executions", params={"limit": 7}, headers=h)
    assert len(r.json()["items"]) == 7 and r.json()["next_cursor"] is None  # no empty page
    await api.client.post(f"{V1}/executions/{ids[0]}/cancel", headers=h)
    r = await api.client.get(f"{V1}/executions", params={"status": "cancelled"}, headers=h)
    assert [i["id"] for i in r.json()["items"]] == [ids[0]]
    r = await api.client.get(f"{V1}/executions", params={"workflow_id": "other@1"}, headers=h)
    assert r.json() == {"items": [], "next_cursor": None}
    for params in ({"status": "sleeping"}, {"limit": 0}, {"limit": 501}, {"cursor": "!!"}):
        assert (await api.client.get(f"{V1}/executions", params=params,
                                     headers=h)).status_code == 422


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
    assert d["lease"] == {"owner": None, "epoch": 0, "expires_at": None}
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
    assert (await api.client.post(url, json={"decision": "maybe"}, headers=h)).status_code == 422
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
    assert r.json()["checks"]["migrations"] == {"ok": True, "revision": "0003",
                                                "expected": "0003"}
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
    r = await api.client.get("/metrics")
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


def _snapshot(status: str, done: list[str]) -> dict[str, list[dict[str, Any]]]:
    row = {"status": status, "decision": None, "failed_agent": None, "failure_type": None,
           "error": None}
    cps = [{"agent_id": a, "agent_index": i, "attempt": 1, "output": "{}", "served_by": None,
            "superseded": 0, "started_at": 0.0, "finished_at": 1.0, "lease_epoch": 0}
           for i, a in enumerate(done)]
    return {"execution": [row], "checkpoints": cps, "handoffs": [], "consensus": [],
            "events": []}


def test_agent_started_is_derived_from_the_graph() -> None:
    diff = EventDiff({"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"]})

    def started(snapshot: dict[str, list[dict[str, Any]]]) -> list[str]:
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
