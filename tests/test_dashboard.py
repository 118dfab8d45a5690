"""The dashboard in-process (httpx over ASGI, the app's lifespan running, SQLite): sessions,
CSRF, the CSP, tenant isolation, escaping, and its actions landing in the store through the
same commands as the API. The real-browser tests are in tests/browser/."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from omium.agents.runtime import ReviewRequested, current_runtime
from omium.api import Settings, create_app
from omium.api.dashboard.executions_list import PAGE_SIZE
from omium.engine.tenants import hash_key
from omium.store.records import UsageRecord
from omium.testing._fake_behaviour import Behaviour
from omium.testing.fake_server import FakeOpenAIServer
from tests._api_harness import ADMIN, ADMIN_H, LOAN, V1, VOTE, Api, agent, sequential
from tests._processes import free_port, omium


def ask(inputs: object) -> dict[str, str]:
    """Asks a human a question; run again with the answer, returns it (an agent of the test)."""
    runtime = current_runtime()
    if runtime is None or runtime.review is None:
        raise ReviewRequested("Which plan, A or B?")
    return {"answer": runtime.review.decision}


ASK = {"name": "ask", "agents": [agent("asker", "tests.test_dashboard:ask")]}
BOOM = {"name": "boom", "agents": [agent("ok"), agent("bad", "tests.agents_for_tests:boom")]}
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def key_of(headers: dict[str, str]) -> str:
    return headers["Authorization"].removeprefix("Bearer ")


async def sign_in(client: httpx.AsyncClient, key: str) -> str:
    """Sign in through the login form; returns the session's CSRF token."""
    form = await client.get("/login")
    token = _CSRF.search(form.text)
    assert token is not None
    r = await client.post("/login", data={"api_key": key, "csrf_token": token.group(1)})
    assert r.status_code == 303 and r.headers["location"] == "/executions", r.text
    page = await client.get("/executions")
    found = re.search(r'<meta name="csrf-token" content="([^"]+)"', page.text)
    assert found is not None
    return found.group(1)


def browser(api: Api) -> httpx.AsyncClient:
    """A second client on the same app: a cookie jar of its own, as another browser."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=api.app), base_url="http://t")


async def status_of(api: Api, execution_id: str) -> str:
    rec = await api.store.get_execution(execution_id)
    assert rec is not None
    return rec.status


# -- signing in and out


@pytest.mark.parametrize("path", ["/", "/executions", "/executions/ex_x", "/workflows",
                                  "/workflows/w", "/llm"])
async def test_signed_out_pages_send_the_browser_to_login(api: Api, path: str) -> None:
    r = await api.client.get(path)
    assert r.status_code == 303 and r.headers["location"] == "/login"


async def test_sign_in_keeps_only_a_signed_httponly_cookie_and_sign_out_clears_it(
        api: Api) -> None:
    tenant, h = await api.tenant("acme")
    form = await api.client.get("/login")
    assert '<form id="login-form" method="post" action="/login"' in form.text
    assert 'name="api_key" type="password"' in form.text
    token = _CSRF.search(form.text)
    assert token is not None
    r = await api.client.post("/login", data={"api_key": key_of(h),
                                              "csrf_token": token.group(1)})
    assert r.status_code == 303 and r.headers["location"] == "/executions"
    cookie = next(c for c in r.headers.get_list("set-cookie") if c.startswith("omium_session="))
    flags = [f.strip().lower() for f in cookie.split(";")]
    assert "httponly" in flags and "path=/" in flags and "samesite=lax" in flags
    assert "secure" not in flags  # plain http on loopback: a Secure cookie would be dropped
    assert key_of(h) not in cookie and key_of(h) not in r.headers.get("location", "")
    home = await api.client.get("/")
    assert home.status_code == 303 and home.headers["location"] == "/executions"
    page = await api.client.get("/executions")
    assert page.status_code == 200
    assert f'<span data-testid="tenant">{tenant}</span>' in page.text
    assert 'select id="tenant-switch"' not in page.text  # a tenant's key: no switcher
    csrf = re.search(r'<meta name="csrf-token" content="([^"]+)"', page.text)
    assert csrf is not None
    out = await api.client.post("/logout", data={"csrf_token": csrf.group(1)})
    assert out.status_code == 303 and out.headers["location"] == "/login"
    assert (await api.client.get("/executions")).status_code == 303


async def test_a_bad_key_is_a_401_that_says_so(api: Api) -> None:
    form = await api.client.get("/login")
    token = _CSRF.search(form.text)
    assert token is not None
    r = await api.client.post("/login", data={"api_key": "om_not-a-key",
                                              "csrf_token": token.group(1)})
    assert r.status_code == 401
    assert '<p class="error" role="alert">' in r.text and "not valid" in r.text
    assert 'id="login-form"' in r.text
    assert not any(c.startswith("omium_session=") for c in r.headers.get_list("set-cookie"))


async def test_the_login_form_needs_its_pre_session_token(api: Api) -> None:
    _, h = await api.tenant("acme")
    # A page elsewhere posting a key (login CSRF) has neither the cookie nor the token.
    r = await api.client.post("/login", data={"api_key": key_of(h)})
    assert r.status_code == 403
    form = await api.client.get("/login")
    token = _CSRF.search(form.text)
    assert token is not None
    r = await api.client.post("/login", data={"api_key": key_of(h),
                                              "csrf_token": token.group(1)},
                              headers={"Origin": "https://evil.example"})
    assert r.status_code == 403  # the right token, from another origin


async def test_revoking_the_key_ends_its_sessions_at_once(api: Api) -> None:
    _, h = await api.tenant("acme")
    await sign_in(api.client, key_of(h))
    assert await api.store.revoke_api_key(hash_key(key_of(h)))
    r = await api.client.get("/executions")
    assert r.status_code == 303 and r.headers["location"] == "/login"


async def test_a_tampered_session_cookie_is_refused(api: Api) -> None:
    _, ha = await api.tenant("acme")
    b, _ = await api.tenant("globex")
    await sign_in(api.client, key_of(ha))
    value = api.client.cookies["omium_session"]
    body, mac = value.split(".")
    payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    payload[0] = b  # claim the other tenant
    forged = base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")
    api.client.cookies.set("omium_session", f"{forged}.{mac}")
    assert (await api.client.get("/executions")).status_code == 303


async def test_a_session_from_one_serve_process_is_accepted_by_another(tmp_path: Path) -> None:
    """`omium serve --processes 2`: no per-process memory; one gateway secret signs for all."""
    url = f"sqlite:///{tmp_path}/shared.db"
    apps = [create_app(Settings(database_url=url, admin_key=ADMIN, gateway_secret="s" * 32,
                                worker_concurrency=0)) for _ in range(2)]
    async with apps[0].router.lifespan_context(apps[0]), \
            apps[1].router.lifespan_context(apps[1]):
        one = httpx.AsyncClient(transport=httpx.ASGITransport(app=apps[0]), base_url="http://t")
        two = httpx.AsyncClient(transport=httpx.ASGITransport(app=apps[1]), base_url="http://t")
        made = await one.post(f"{V1}/tenants", json={"name": "acme"}, headers=ADMIN_H)
        await sign_in(one, made.json()["api_key"])
        two.cookies.set("omium_session", one.cookies["omium_session"])
        r = await two.get("/executions")
        assert r.status_code == 200 and '<span data-testid="tenant">acme</span>' in r.text
        await one.aclose()
        await two.aclose()


# -- what every page promises


async def test_pages_carry_a_strict_csp_and_no_inline_script_or_style(api: Api) -> None:
    tid, h = await api.tenant("acme")
    ex = await api.submit(h, workflow=VOTE)
    await api.drive(tid, ex)
    await sign_in(api.client, key_of(h))
    for path in ["/login", "/executions", f"/executions/{ex}", "/workflows", "/workflows/vote",
                 "/llm"]:
        r = await api.client.get(path)
        assert r.status_code == 200, path
        csp = r.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "default-src 'none'" in csp, path
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp, path
        assert "frame-ancestors 'none'" in csp, path
        assert re.fullmatch(r"render;dur=\d+(\.\d+)?", r.headers["server-timing"]), path
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", r.text), path  # no inline JS
        assert " style=" not in r.text and "<style" not in r.text, path
        assert not re.search(r"\son[a-z]+=", r.text), path  # no inline event handlers
        assert "https://" not in re.sub(r"<p class=\"muted\">.*?</p>", "", r.text), path


async def test_every_form_carries_the_csrf_token(api: Api) -> None:
    tid, h = await api.tenant("acme")
    ex = await api.submit(h, workflow=VOTE)
    await api.drive(tid, ex)
    csrf = await sign_in(api.client, key_of(h))
    for path in [f"/executions/{ex}", "/workflows/vote"]:
        text = (await api.client.get(path)).text
        posts = re.findall(r'<form[^>]*method="post".*?</form>', text, re.S)
        assert len(posts) >= 2, path
        assert all(f'name="csrf_token" value="{csrf}"' in f for f in posts), path


async def test_an_agent_output_holding_script_is_shown_as_text(api: Api) -> None:
    tid, h = await api.tenant("acme")
    evil = "<script>alert('pwned')</script>"
    ex = await api.submit(h, workflow=sequential(n=2), inputs={"note": evil})
    await api.drive(tid, ex)
    await sign_in(api.client, key_of(h))
    text = (await api.client.get(f"/executions/{ex}")).text
    assert "<script>alert" not in text
    assert "&lt;script&gt;alert(&#39;pwned&#39;)&lt;/script&gt;" in text  # in inputs and outputs
    assert text.count("&lt;script&gt;") >= 3  # the inputs and each agent's echoed output


# -- tenants


async def test_another_tenants_execution_is_not_found_and_cannot_be_acted_on(api: Api) -> None:
    _, ha = await api.tenant("acme")
    _, hb = await api.tenant("globex")
    theirs = await api.submit(hb, workflow=sequential())
    csrf = await sign_in(api.client, key_of(ha))
    for path in [f"/executions/{theirs}", "/executions/ex_unknown"]:
        r = await api.client.get(path)
        assert r.status_code == 404
        assert re.search(r"<h1>[^<]*not found[^<]*</h1>", r.text), path
    r = await api.client.post(f"/executions/{theirs}/cancel", data={"csrf_token": csrf})
    assert r.status_code == 404
    assert await status_of(api, theirs) == "queued"
    their_wf = (await api.store.get_execution(theirs)).workflow_id  # type: ignore[union-attr]
    assert their_wf is not None
    for path in [f"/workflows/{their_wf}", "/workflows/seq"]:  # by id, and by name
        r = await api.client.get(path)
        assert r.status_code == 404 and "not found" in r.text, path
    r = await api.client.post(f"/workflows/{their_wf}/start", data={"csrf_token": csrf})
    assert r.status_code == 404
    assert len(await api.store.list_executions(tenant_id="globex")) == 1
    listed = (await api.client.get("/executions")).text
    assert theirs not in listed


async def test_an_admin_switches_tenants_and_a_tenant_cannot(api: Api) -> None:
    _, ha = await api.tenant("acme")
    _, hb = await api.tenant("globex")
    ours = await api.submit(ha, workflow=sequential())
    theirs = await api.submit(hb, workflow=sequential())
    admin = browser(api)
    csrf = await sign_in(admin, ADMIN)
    page = (await admin.get("/executions")).text
    assert '<select id="tenant-switch" name="tenant"' in page
    assert '<option value="acme"' in page and '<option value="globex"' in page
    r = await admin.post("/tenant", data={"tenant": "globex", "csrf_token": csrf,
                                          "next": "/executions"})
    assert r.status_code == 303 and r.headers["location"] == "/executions"
    page = (await admin.get("/executions")).text
    assert '<span data-testid="tenant">globex</span>' in page
    assert theirs in page and ours not in page
    r = await admin.post("/tenant", data={"tenant": "nobody", "csrf_token": csrf})
    assert r.status_code == 404 and "tenant" in r.text
    r = await admin.post("/tenant", data={"tenant": "acme", "csrf_token": csrf,
                                          "next": "//evil.example/"})
    assert r.headers["location"] == "/executions"  # never an open redirect
    await admin.aclose()
    tenant_csrf = await sign_in(api.client, key_of(ha))
    r = await api.client.post("/tenant", data={"tenant": "globex", "csrf_token": tenant_csrf})
    assert r.status_code == 403
    assert '<span data-testid="tenant">acme</span>' in (await api.client.get("/executions")).text


# -- CSRF on actions


async def test_actions_without_or_with_a_wrong_csrf_token_are_refused(api: Api) -> None:
    _, h = await api.tenant("acme")
    ex = await api.submit(h, workflow=sequential())
    csrf = await sign_in(api.client, key_of(h))
    other = browser(api)
    other_csrf = await sign_in(other, key_of(h))  # the same key, another session
    await other.aclose()
    assert other_csrf != csrf
    for data in [{}, {"csrf_token": "forged"}, {"csrf_token": other_csrf}]:
        r = await api.client.post(f"/executions/{ex}/cancel", data=data)
        assert r.status_code == 403, data
        assert "csrf_token" in r.text
    assert await status_of(api, ex) == "queued"
    r = await api.client.post(f"/executions/{ex}/cancel", data={},
                              headers={"X-CSRF-Token": csrf})  # htmx sends it as a header
    assert r.status_code == 303
    assert await status_of(api, ex) == "cancelled"


# -- actions: the commands the API and the CLI call


async def paused(api: Api, workflow: dict[str, object]) -> tuple[str, str, str]:
    """A tenant's execution awaiting review, and the tenant signed in: (tenant, id, csrf)."""
    tid, h = await api.tenant("acme")
    ex = await api.submit(h, workflow=workflow)
    assert (await api.drive(tid, ex)).status == "awaiting_review"
    return tid, ex, await sign_in(api.client, key_of(h))


async def test_review_from_the_page_is_the_apis_review(api: Api) -> None:
    tid, ex, csrf = await paused(api, VOTE)
    page = (await api.client.get(f"/executions/{ex}")).text
    assert 'id="review-form"' in page and 'data-testid="execution-status">awaiting_review<' in page
    assert 'hx-trigger="every 2s"' in page  # it refreshes itself while it can still change
    r = await api.client.post(f"/executions/{ex}/review", data={
        "csrf_token": csrf, "decision": "approve", "reviewer": "Grace <b>H</b>",
        "comment": "checked the <income>"})
    assert r.status_code == 303 and r.headers["location"] == f"/executions/{ex}"
    assert await status_of(api, ex) == "queued"  # a worker takes it from here
    [review] = [e for e in await api.store.get_events(ex) if e.type == "review"]
    assert review.data == {"decision": "approve", "reviewer": "Grace <b>H</b>",
                           "comment": "checked the <income>"}
    page = (await api.client.get(f"/executions/{ex}")).text
    assert "Grace &lt;b&gt;H&lt;/b&gt;" in page and 'id="review-form"' not in page
    # Reviewing again is refused as the API refuses it (409), the reason on the page.
    r = await api.client.post(f"/executions/{ex}/review", data={
        "csrf_token": csrf, "decision": "approve", "reviewer": "again"})
    assert r.status_code == 409
    assert re.search(r'<p class="error" role="alert">[^<]*not awaiting_review', r.text)
    assert (await api.drive(tid, ex)).status == "completed"


async def test_a_decision_the_vote_cannot_take_is_a_422_naming_it(api: Api) -> None:
    _, ex, csrf = await paused(api, VOTE)
    r = await api.client.post(f"/executions/{ex}/review", data={
        "csrf_token": csrf, "decision": "maybe"})
    assert r.status_code == 422 and "decision:" in r.text and 'role="alert"' in r.text
    assert await status_of(api, ex) == "awaiting_review"


async def test_an_agents_own_question_is_answered_with_text(api: Api) -> None:
    tid, ex, csrf = await paused(api, ASK)
    page = (await api.client.get(f"/executions/{ex}")).text
    assert "Which plan, A or B?" in page and 'name="answer"' in page
    r = await api.client.post(f"/executions/{ex}/review", data={
        "csrf_token": csrf, "decision": "answer", "answer": "B <b>now</b>", "reviewer": "Ada"})
    assert r.status_code == 303
    assert (await api.drive(tid, ex)).status == "completed"
    rec = await api.store.get_execution(ex)
    assert rec is not None and rec.result is not None
    assert rec.result["results"]["asker"] == {"answer": "B <b>now</b>"}
    assert "B &lt;b&gt;now&lt;/b&gt;" in (await api.client.get(f"/executions/{ex}")).text


async def test_cancel_and_resume_from_the_page(api: Api) -> None:
    tid, h = await api.tenant("acme")
    queued = await api.submit(h, workflow=sequential())
    failed = await api.submit(h, workflow=BOOM)
    assert (await api.drive(tid, failed)).status == "failed"
    csrf = await sign_in(api.client, key_of(h))
    page = (await api.client.get(f"/executions/{queued}")).text
    assert 'id="cancel-form"' in page and 'id="resume-form"' not in page
    r = await api.client.post(f"/executions/{queued}/cancel", data={"csrf_token": csrf})
    assert r.status_code == 303
    assert await status_of(api, queued) == "cancelled"
    r = await api.client.post(f"/executions/{queued}/cancel", data={"csrf_token": csrf})
    assert r.status_code == 409 and "cancelled already" in r.text and 'role="alert"' in r.text
    page = (await api.client.get(f"/executions/{failed}")).text
    assert 'id="resume-form"' in page and 'data-testid="execution-status">failed<' in page
    r = await api.client.post(f"/executions/{failed}/resume", data={"csrf_token": csrf})
    assert r.status_code == 303
    assert await status_of(api, failed) == "queued"
    assert "resumed" in [e.type for e in await api.store.get_events(failed)]


# -- the workflows page and its start form


async def test_the_start_form_validates_as_the_api_does(api: Api) -> None:
    _, h = await api.tenant("acme")
    r = await api.client.post(f"{V1}/workflows", json=LOAN, headers=h)
    assert r.status_code == 201
    wf_id = r.json()["id"]
    csrf = await sign_in(api.client, key_of(h))
    listing = (await api.client.get("/workflows")).text
    assert 'data-workflow="loan"' in listing and 'href="/workflows/loan"' in listing
    page = (await api.client.get("/workflows/loan")).text
    assert 'id="start-form"' in page and 'data-node="kyc"' in page
    action = re.search(r'id="start-form" method="post" action="([^"]+)"', page)
    assert action is not None
    for text, reason in [("{not json", "inputs: not valid JSON"),
                         ('{"applicant": 5}', "inputs.applicant"),
                         ("{}", "applicant")]:
        r = await api.client.post(action.group(1), data={"csrf_token": csrf, "inputs": text})
        assert r.status_code == 422, text
        alert = re.search(r'<div class="error" role="alert">(.*?)</div>', r.text, re.S)
        assert alert is not None and reason in alert.group(1), (text, alert)
        assert "&lt;" not in text or text in r.text  # the text typed comes back to fix
    assert await api.store.list_executions() == []  # nothing was started
    r = await api.client.post(action.group(1), data={
        "csrf_token": csrf, "inputs": '{"applicant": {"name": "Ada"}}'})
    assert r.status_code == 303
    ex = r.headers["location"].removeprefix("/executions/")
    rec = await api.store.get_execution(ex)
    assert rec is not None and rec.workflow_id == wf_id and rec.status == "queued"
    assert rec.inputs == {"applicant": {"name": "Ada"}}
    assert f'data-execution-id="{ex}"' in (await api.client.get("/workflows/loan")).text


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
            token = _CSRF.search(form.text)
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
