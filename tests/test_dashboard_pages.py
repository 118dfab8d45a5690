"""The dashboard's pages in-process: the executions list (filters, counts, keyset pages, live
rows), one execution (attempts, graph, fallbacks and rollbacks), the LLM page; and a real
`omium serve` printing the dashboard's URL with two processes sharing sessions."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from omium.api.dashboard.executions_list import PAGE_SIZE
from omium.store.records import UsageRecord
from omium.testing._fake_behaviour import Behaviour
from omium.testing.fake_server import FakeOpenAIServer
from tests._api_harness import Api, agent, sequential
from tests._dashboard_util import BOOM, CSRF, key_of, sign_in
from tests._processes import free_port, omium

# -- the executions list


async def test_the_list_filters_counts_and_pages_by_keyset(any_api: Api) -> None:
    """On SQLite and PostgreSQL: the store's keyset query and counts behind the page."""
    api = any_api
    tid, h = await api.tenant("acme")
    ids = [await api.submit(h, workflow=sequential(n=1)) for _ in range(PAGE_SIZE + 1)]
    failed = await api.submit(h, workflow=BOOM)
    await api.drive(tid, failed)
    await sign_in(api.client, key_of(h))
    page = (await api.client.get("/executions")).text
    assert re.search(r'data-status-count="queued">51<', page)
    assert re.search(r'data-status-count="failed">1<', page)
    first = re.findall(r'<tr data-execution-id="([^"]+)"', page)
    assert len(first) == PAGE_SIZE and first[0] == failed  # newest first
    nxt = re.search(r'<a id="next-page" class="button ghost" href="([^"]+)"', page)
    assert nxt is not None
    second = (await api.client.get(nxt.group(1).replace("&amp;", "&"))).text
    rest = re.findall(r'<tr data-execution-id="([^"]+)"', second)
    assert set(first) | set(rest) == {*ids, failed} and not set(first) & set(rest)
    only = (await api.client.get("/executions?status=failed")).text
    assert re.findall(r'<tr data-execution-id="([^"]+)"', only) == [failed]
    assert '<span class="badge failed" data-testid="status">failed</span>' in only
    found = (await api.client.get(f"/executions?q={ids[3][:12]}")).text
    assert ids[3] in re.findall(r'<tr data-execution-id="([^"]+)"', found)
    named = (await api.client.get("/executions?workflow=boom")).text
    assert re.findall(r'<tr data-execution-id="([^"]+)"', named) == [failed]
    recent = (await api.client.get("/executions?since=1h")).text
    assert len(re.findall(r"<tr data-execution-id=", recent)) == PAGE_SIZE
    old = (await api.client.get("/executions?since=2999-01-01")).text
    assert re.findall(r"<tr data-execution-id=", old) == []
    for bad, field in [("status=lost", "status:"), ("since=yesterday", "since:"),
                       ("cursor=%%%", "cursor:")]:
        r = await api.client.get(f"/executions?{bad}")
        assert r.status_code == 422 and field in r.text and 'role="alert"' in r.text, bad


async def test_the_live_rows_are_sent_again_only_when_they_change(api: Api) -> None:
    _, h = await api.tenant("acme")
    await api.submit(h, workflow=sequential(n=1))
    await sign_in(api.client, key_of(h))
    page = (await api.client.get("/executions")).text
    live = re.search(r'hx-get="(/executions/rows\?[^"]+)"', page)
    assert live is not None
    url = live.group(1).replace("&amp;", "&")
    assert (await api.client.get(url)).status_code == 204  # nothing new: no swap, no jump
    newer = await api.submit(h, workflow=sequential(n=1))
    r = await api.client.get(url)
    assert r.status_code == 200 and f'data-execution-id="{newer}"' in r.text
    assert re.search(r'data-status-count="queued">2<', r.text)


# -- one execution


async def test_the_execution_page_draws_attempts_graph_and_sections(api: Api) -> None:
    tid, h = await api.tenant("acme")
    flaky = {"name": "flaky", "agents": [agent("first"), agent(
        "wobbly", "tests.agents_for_tests:flaky", retry={"max_attempts": 3, "backoff_s": 0})]}
    ex = await api.submit(h, workflow=flaky)
    assert (await api.drive(tid, ex)).status == "completed"
    await sign_in(api.client, key_of(h))
    r = await api.client.get(f"/executions/{ex}")
    page = r.text
    for section in ["timeline", "graph", "handoffs", "votes", "events", "llm-calls", "lease",
                    "io"]:
        assert f'<section id="{section}"' in page, section
    # One bar per attempt: two failed, then the one that succeeded.
    assert re.findall(r'data-step="wobbly" data-attempt="(\d)"', page) == ["1", "2", "3"]
    assert len(re.findall(r'class="bar failed estimated" data-step="wobbly"', page)) == 2
    assert re.search(r'class="node done" data-node="wobbly"', page)
    assert 'data-testid="execution-status">completed<' in page
    assert 'id="cancel-form"' not in page and 'hx-trigger' not in page  # ended: not polled
    assert "<details" in page and 'data-testid="output"' in page



async def test_fallbacks_and_rollbacks_are_drawn_where_they_happened(
        api: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMIUM_TEST_COUNTER", str(tmp_path / "n"))
    tid, h = await api.tenant("acme")
    fb = await api.submit(h, workflow={"name": "fb", "agents": [
        agent("main", "tests.agents_for_tests:boom", fallback="backup",
              retry={"max_attempts": 2, "backoff_s": 0}),
        agent("backup", "tests.agents_for_tests:approve")]})
    needs_two = {"type": "object", "properties": {"n": {"type": "integer", "minimum": 2}}}
    rb = await api.submit(h, workflow={"name": "rb", "agents": [
        agent("producer", "tests.agents_for_tests:counter"),
        agent("consumer", input_schema=needs_two, on_failure="rollback", max_rollbacks=2)]})
    assert (await api.drive(tid, fb)).status == "completed"
    assert (await api.drive(tid, rb)).status == "completed"
    await sign_in(api.client, key_of(h))
    page = (await api.client.get(f"/executions/{fb}")).text
    # Two failed attempts of main, then its checkpoint served by the fallback.
    assert re.findall(r'class="bar (\w+)[^"]*" data-step="main"', page) == [
        "failed", "failed", "fallback"]
    assert re.search(r'class="node fallback" data-node="main"', page)
    assert "served by backup" in page
    page = (await api.client.get(f"/executions/{rb}")).text
    # The producer's first checkpoint is drawn rolled back, then its second run.
    assert re.findall(r'class="bar (\w+)[^"]*" data-step="producer"', page) == [
        "superseded", "done"]
    assert 'data-event="rollback"' in page

async def test_the_llm_page_shows_figures_backends_and_balance(
        api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMIUM_LLM_LOCAL_URL", "http://127.0.0.1:9/v1")
    tid, h = await api.tenant("acme")
    await api.store.add_credits(tid, 250 * 10_000_000)
    now = time.time()
    await api.store.charge_usage(UsageRecord("k1", tid, "local", "local", "local", 100, 20,
                                             1_000_000, 12.0, created_at=now))
    await sign_in(api.client, key_of(h))
    r = await api.client.get("/llm?window=24h")
    assert r.status_code == 200
    assert re.search(r'<tr data-backend="local">', r.text)
    assert re.search(r'data-testid="circuit">closed<', r.text)
    assert re.search(r'data-testid="local-share">100\.0%<', r.text)
    assert re.search(r'data-testid="balance">249\.9<', r.text)  # 250 credits less $0.001
    assert 'id="spend-per-day"' in r.text and 'id="spend-per-model"' in r.text
    bad = await api.client.get("/llm?window=forever")
    assert bad.status_code == 422 and "window:" in bad.text



async def test_the_llm_page_shows_the_circuit_this_process_opened(
        api: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A call through this serve's gateway: the local backend fails (its circuit opens at the
    first failure here), the hosted one serves it as a fallback; the page shows both."""
    async with FakeOpenAIServer(model="gpt-3.5-turbo") as local, \
            FakeOpenAIServer(model="gpt-3.5-turbo") as hosted:
        # Both serve one model, so a call for it may fall back from one to the other.
        config = tmp_path / "omium-llm.yaml"
        config.write_text(json.dumps({"backends": [
            {"name": "local", "base_url": local.base_url, "model": "gpt-3.5-turbo"},
            {"name": "openai", "base_url": hosted.base_url, "model": "gpt-3.5-turbo",
             "kind": "hosted"}], "circuit": {"failure_threshold": 1, "cooldown_s": 600}}))
        monkeypatch.setenv("OMIUM_LLM_CONFIG", str(config))
        local.default = Behaviour(kind="fail", status=503)
        tid, h = await api.tenant("acme")
        await api.store.add_credits(tid, 100 * 10_000_000)
        r = await api.client.post("/v1/chat/completions", headers=h, json={
            "model": "gpt-3.5-turbo", "messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 200 and r.headers["x-omium-backend"] == "openai", r.text
        await sign_in(api.client, key_of(h))
        page = (await api.client.get("/llm")).text
    rows = dict(re.findall(r'<tr data-backend="(\w+)">.*?data-testid="circuit">([\w-]+)<',
                           page, re.S))
    assert rows == {"local": "open", "openai": "closed"}
    assert re.search(r'data-testid="local-share">0\.0%<', page)
    assert re.search(r'data-testid="fallback-success">100\.0%<', page)
    assert '<td class="mono">gpt-3.5-turbo</td>' in page  # its spend, per model

# -- a real `omium serve`


def test_omium_serve_prints_the_dashboards_url_and_two_processes_share_sessions(
        tmp_path: Path) -> None:
    """The URL printed next to the key opens the sign-in; with --processes 2 a session made
    by one process is honoured by whichever answers next."""
    port = free_port()
    proc = omium("serve", "--db", f"sqlite:///{tmp_path}/o.db", "--port", str(port),
                 "--processes", "2", "--no-workers", env={**os.environ},
                 stderr=subprocess.PIPE, text=True)
    try:
        lines: list[str] = []
        assert proc.stderr is not None
        while not any(line.startswith("dashboard: ") for line in lines):
            line = proc.stderr.readline()
            assert line, f"serve exited: {lines}"
            lines.append(line)
        url = next(ln for ln in lines if ln.startswith("dashboard: ")).split()[1]
        key = next(ln for ln in lines if ln.startswith("tenant 'local' key: ")).split()[3]
        assert url == f"http://127.0.0.1:{port}/"
        with httpx.Client(base_url=url) as client:
            for _ in range(100):  # until both processes listen
                try:
                    client.get("/health")
                    break
                except httpx.TransportError:
                    time.sleep(0.1)
            assert client.get("/").headers["location"] == "/login"
            form = client.get("/login")
            token = CSRF.search(form.text)
            assert token is not None
            r = client.post("/login", data={"api_key": key, "csrf_token": token.group(1)})
            assert r.status_code == 303
            # A fresh connection each: the processes share the socket; no process keeps a
            # session, so whichever accepts it must honour the cookie.
            for _ in range(20):
                with httpx.Client(base_url=url, cookies=client.cookies) as fresh:
                    page = fresh.get("/executions")
                    assert page.status_code == 200
                    assert '<span data-testid="tenant">local</span>' in page.text
    finally:
        proc.terminate()
        proc.wait(20)
