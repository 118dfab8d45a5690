"""The REST service: keys and tenants, workflows, submissions, listing."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from omium.engine.tenants import generate_key, hash_key, tenant_slug
from tests._api_harness import (
    ADMIN_H,
    ECHO,
    LOAN,
    V1,
    Api,
    agent,
    sequential,
)

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


async def test_clients_cannot_name_arbitrary_code_as_an_agent(api: Api) -> None:
    _, headers = await api.tenant("mallory")
    evil = {"name": "x", "agents": [{"id": "a", "definition": {"callable": "os:system"}},
                                    {"id": "b", "definition": {"callable": ECHO,
                                                               "accept": "builtins:exec"}}]}
    for path, body in ((f"{V1}/workflows", evil), (f"{V1}/executions", {"workflow": evil})):
        r = await api.client.post(path, json=body, headers=headers)
        assert r.status_code == 422, r.text
        locs = [d["loc"] for d in r.json()["detail"]]
        assert locs == ["agents[0] (a).definition.callable", "agents[1] (b).definition.accept"]
        assert "not allowed over the API" in r.json()["detail"][0]["msg"]
    assert await api.store.list_executions() == []
