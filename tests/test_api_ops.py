"""Operating the service: who may read /metrics, an OpenAPI spec true to the answers, slow
clients that cannot hold sockets, and a small detail for a 1,000-agent execution."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema
import pytest

from omium.status import STATUSES
from omium.store.records import UsageRecord
from tests._api_harness import ADMIN_H, V1, Api, sequential, serve
from tests._processes import ROOT
from tests._serve_process import METRICS_TOKEN, omium_serve

# -- /metrics names tenants: a metrics token or an admin key, never anonymous


async def test_metrics_need_the_token_or_an_admin_key(tmp_path: Path) -> None:
    async with serve(f"sqlite:///{tmp_path}/m.db", metrics_token="scrape-me") as api:
        _, tenant = await api.tenant("scraped")
        await api.submit(tenant, workflow=sequential())
        anonymous = await api.client.get("/metrics")
        wrong = await api.client.get("/metrics", headers={"Authorization": "Bearer nope"})
        tenant_key = await api.client.get("/metrics", headers=tenant)
        token = await api.client.get("/metrics",
                                     headers={"Authorization": "Bearer scrape-me"})
        admin = await api.client.get("/metrics", headers=ADMIN_H)
        health = await api.client.get("/health")
        ready = await api.client.get("/health/ready")
    assert anonymous.status_code == 401 and "Bearer" in anonymous.json()["detail"]
    assert anonymous.headers["www-authenticate"] == "Bearer"
    assert wrong.status_code == 401
    assert tenant_key.status_code == 403 and "metrics token" in tenant_key.json()["detail"]
    for ok in (token, admin):
        assert ok.status_code == 200
        assert 'omium_executions_started_total{framework="python",tenant_id="scraped"}' \
            in ok.text
    assert health.status_code == 200 and ready.status_code == 200  # probes stay public


async def test_without_a_token_only_admin_keys_read_metrics(api: Api) -> None:
    assert (await api.client.get("/metrics")).status_code == 401
    assert (await api.client.get("/metrics", headers={"Authorization": "Bearer "})
            ).status_code == 401
    assert (await api.client.get("/metrics", headers=ADMIN_H)).status_code == 200


# -- the OpenAPI spec says what the API answers

async def _spec(api: Api) -> dict[str, Any]:
    return (await api.client.get("/openapi.json")).json()


def _body_schema(spec: dict[str, Any], path: str, method: str, status: int) -> dict[str, Any]:
    """The response schema the spec gives, with its components, for jsonschema."""
    media = spec["paths"][path][method]["responses"][str(status)]["content"]
    return {**media["application/json"]["schema"], "components": spec["components"]}


async def test_every_api_route_documents_its_errors_with_a_model(api: Api) -> None:
    spec = await _spec(api)
    for path, operations in spec["paths"].items():
        if not path.startswith(V1):
            continue
        for method, op in operations.items():
            for status in ("400", "401", "403", "408", "413", "422"):
                assert "content" in op["responses"][status], (method, path, status)
            if "{" in path:
                assert "404" in op["responses"], (method, path)
    for path, method in [(f"{V1}/executions/{{execution_id}}/cancel", "post"),
                         (f"{V1}/tenants", "post"), (f"{V1}/executions", "post")]:
        assert "content" in spec["paths"][path][method]["responses"]["409"]
    assert set(spec["paths"]["/metrics"]["get"]["responses"]) == {"200", "401", "403"}


async def test_status_filter_and_cursor_are_described(api: Api) -> None:
    spec = await _spec(api)
    params = {p["name"]: p for p in spec["paths"][f"{V1}/executions"]["get"]["parameters"]}
    enum = params["status"]["schema"]["anyOf"][0]["enum"]
    assert tuple(enum) == STATUSES
    assert "next_cursor" in params["cursor"]["description"]
    _, h = await api.tenant("filters")
    r = await api.client.get(f"{V1}/executions?status=bogus", headers=h)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "status"]
    r = await api.client.get(f"{V1}/executions?cursor=%%%", headers=h)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "cursor"]


async def test_omium_and_fastapi_422_bodies_match_the_spec(api: Api) -> None:
    spec = await _spec(api)
    _, h = await api.tenant("shapes")
    schema = _body_schema(spec, f"{V1}/workflows", "post", 422)
    bad_workflow = await api.client.post(f"{V1}/workflows", headers=h, json={
        "name": "w", "agents": [{"id": "a", "framework": "nope"}]})
    assert bad_workflow.status_code == 422
    assert isinstance(bad_workflow.json()["detail"][0]["loc"], str)  # Omium's readable path
    jsonschema.validate(bad_workflow.json(), schema)
    bad_body = await api.client.post(f"{V1}/executions", headers=h, json={"nope": 1})
    assert bad_body.status_code == 422 and isinstance(bad_body.json()["detail"][0]["loc"], list)
    jsonschema.validate(bad_body.json(), _body_schema(spec, f"{V1}/executions", "post", 422))
    missing = await api.client.get(f"{V1}/executions/ex_none", headers=h)
    assert missing.status_code == 404
    jsonschema.validate(missing.json(),
                        _body_schema(spec, f"{V1}/executions/{{execution_id}}", "get", 404))


# -- a 1,000-agent execution: a small detail, and every row a page at a time

N_AGENTS = 1000


async def _pages(api: Api, h: dict[str, str], path: str, limit: int) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    for _ in range(N_AGENTS // limit + 2):
        query = f"?limit={limit}" + (f"&cursor={cursor}" if cursor else "")
        r = await api.client.get(path + query, headers=h)
        assert r.status_code == 200, r.text
        page = r.json()
        assert len(page["items"]) <= limit
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items
    raise AssertionError(f"{path} never reached its last page")


async def test_a_thousand_agent_detail_stays_small_and_lists_page_through_all(
        any_api: Api) -> None:
    api = any_api
    tenant, h = await api.tenant("big")
    wf = sequential("big", n=N_AGENTS, fn="tests.agents_for_tests:approve")
    eid = await api.submit(h, workflow=wf)
    assert (await api.drive(tenant, eid)).status == "completed"
    calls = 150  # LLM usage rows past the detail's first 100: the sums still count them all
    for i in range(calls):
        await api.store.charge_usage(UsageRecord(
            f"u{i}", tenant, "local", "m", "local", prompt_tokens=10, completion_tokens=2,
            cost_nano=1_000_000_001, latency_ms=1.0, execution_id=eid, agent_id=f"a{i}"))

    r = await api.client.get(f"{V1}/executions/{eid}", headers=h)
    assert r.status_code == 200
    assert len(r.content) < 256 * 1024, len(r.content)
    d = r.json()
    base = f"{V1}/executions/{eid}"
    assert d["totals"] == {"steps": N_AGENTS, "checkpoints": N_AGENTS,
                           "handoffs": N_AGENTS - 1, "consensus": 0,
                           "events": d["totals"]["events"], "usage_records": calls}
    assert [s["agent_id"] for s in d["steps"]] == [f"a{i}" for i in range(100)]
    assert len(d["checkpoints"]) == len(d["handoffs"]) == 100
    assert d["usage"]["calls"] == calls and len(d["usage"]["records"]) == 100
    assert d["usage"]["prompt_tokens"] == 10 * calls
    assert d["usage"]["cost_usd"] == "150.00000015"  # exact: 150 x 1.000000001 dollars
    assert d["links"] == {"steps": f"{base}/steps", "checkpoints": f"{base}/checkpoints",
                          "handoffs": f"{base}/handoffs", "consensus": f"{base}/consensus",
                          "events": f"{base}/history", "usage_records": f"{base}/usage"}

    everyone = [f"a{i}" for i in range(N_AGENTS)]
    steps = await _pages(api, h, d["links"]["steps"], 300)
    assert [s["agent_id"] for s in steps] == everyone
    checkpoints = await _pages(api, h, d["links"]["checkpoints"], 500)
    assert [c["agent_id"] for c in checkpoints] == everyone
    assert checkpoints[-1]["output"] == {"decision": "approve", "score": 0.9}
    handoffs = await _pages(api, h, d["links"]["handoffs"], 500)
    assert [x["from_agent"] for x in handoffs] == everyone[:-1]
    usage = await _pages(api, h, d["links"]["usage_records"], 40)
    assert [u["agent_id"] for u in usage] == [f"a{i}" for i in range(calls)]
    history = await _pages(api, h, d["links"]["events"], 500)
    assert len(history) == d["totals"]["events"] and history[0]["id"] == d["events"][0]["id"]
    assert (await _pages(api, h, d["links"]["consensus"], 10)) == []


async def test_lists_are_a_tenants_own_and_refuse_made_up_cursors(any_api: Api) -> None:
    api = any_api
    tenant, h = await api.tenant("owner")
    _, other = await api.tenant("other")
    eid = await api.submit(h, workflow=sequential(n=2))
    await api.drive(tenant, eid)
    for part in ("steps", "checkpoints", "handoffs", "consensus", "history", "usage"):
        r = await api.client.get(f"{V1}/executions/{eid}/{part}", headers=other)
        assert r.status_code == 404, part
    for cursor in ("%%%", "cg", "bm90LWEtY3Vyc29y", "cjk5OTk5OTk5OTk5OTk5OTk5OTk5OTk5"):
        r = await api.client.get(f"{V1}/executions/{eid}/steps?cursor={cursor}", headers=h)
        assert r.status_code == 422, cursor
        assert r.json()["detail"][0]["loc"] == ["query", "cursor"]


# -- slow clients against a real `omium serve`

async def _read_to_eof(reader: asyncio.StreamReader) -> bytes:
    out = b""
    while chunk := await reader.read(65536):
        out += chunk
    return out


async def test_slow_clients_are_cut_off_while_others_are_served(tmp_path: Path) -> None:
    async with omium_serve(tmp_path / "slow.db", "--no-workers", OMIUM_HEADER_TIMEOUT_S="1",
                           OMIUM_BODY_TIMEOUT_S="1") as served:
        heads = []  # slowloris: request heads that never finish (and one that says nothing)
        for i in range(5):
            reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
            writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n" * (i > 0))
            await writer.drain()
            heads.append((reader, writer))
        reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
        writer.write(b"POST /api/v1/workflows HTTP/1.1\r\nHost: x\r\nContent-Type: "
                     b"application/json\r\nContent-Length: 1000\r\n\r\n{\"name\":")
        await writer.drain()
        body = (reader, writer)
        # Meanwhile, normal requests (a big body too: only heads are size-limited).
        big = {"name": "x" * 600_000}
        async with aiohttp.ClientSession() as http:
            for _ in range(5):
                async with http.get(f"{served.base}/health") as r:
                    assert r.status == 200
            async with http.post(f"{served.base}/api/v1/tenants", json=big,
                                 headers={"Authorization": f"Bearer {served.key}"}) as r:
                assert r.status == 403  # read in full and answered: not a 408 or 431
        answers = await asyncio.wait_for(
            asyncio.gather(*(_read_to_eof(r) for r, _ in [*heads, body])), 15)
        for _, w in [*heads, body]:
            w.close()
        # A head stuffed past the limit is refused at once.
        reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
        writer.write(b"GET /health HTTP/1.1\r\nX-Pad: " + b"a" * 70_000)
        await writer.drain()
        stuffed = await asyncio.wait_for(_read_to_eof(reader), 15)
        writer.close()
    # Cut off by the 1 s deadlines set above (the defaults are 10 s and 60 s), not held open.
    for answer in answers[:5]:
        assert answer.startswith(b"HTTP/1.1 408 ") and b"head not complete within 1 s" in answer
    assert answers[5].startswith(b"HTTP/1.1 408 ")
    assert b"body not complete within 1 s" in answers[5]
    assert b"connection: close" in answers[5].lower()
    assert stuffed.startswith(b"HTTP/1.1 431 ")


@pytest.mark.parametrize(("name", "value"), [("OMIUM_HEADER_TIMEOUT_S", "soon"),
                                             ("OMIUM_BODY_TIMEOUT_S", "0"),
                                             ("OMIUM_MAX_CONNECTIONS", "0")])
def test_serve_refuses_a_bad_setting_by_name(tmp_path: Path, name: str, value: str) -> None:
    done = subprocess.run([sys.executable, "-m", "omium.cli", "serve", "--db",
                           f"sqlite:///{tmp_path}/bad.db"], cwd=ROOT, capture_output=True,
                          text=True, env={**os.environ, name: value}, timeout=60)
    assert done.returncode == 2, done.stderr
    assert name in done.stderr and "Traceback" not in done.stderr


async def test_metrics_token_reaches_a_real_server(tmp_path: Path) -> None:
    """OMIUM_METRICS_TOKEN in `omium serve`'s environment is what Prometheus sends."""
    async with omium_serve(tmp_path / "scrape.db", "--no-workers") as served, \
            aiohttp.ClientSession() as http:
        async with http.get(f"{served.base}/metrics") as anonymous:
            assert anonymous.status == 401
        async with http.get(f"{served.base}/metrics",
                            headers={"Authorization": f"Bearer {METRICS_TOKEN}"}) as r:
            assert r.status == 200 and "omium_queue_depth" in await r.text()
