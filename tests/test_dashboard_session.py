"""The dashboard in-process (httpx over ASGI, the app's lifespan running, SQLite): signing
in and out, what every page promises (the CSP, CSRF tokens, escaping), tenant isolation and CSRF
on actions. The real-browser tests are in tests/browser/."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import httpx
import pytest

from omium.api import Settings, create_app
from omium.engine.tenants import hash_key
from tests._api_harness import ADMIN, ADMIN_H, V1, VOTE, Api, sequential
from tests._dashboard_util import CSRF, browser, key_of, sign_in, status_of

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
    token = CSRF.search(form.text)
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


async def test_signing_out_ends_the_session_for_every_copy_of_its_cookie(api: Api) -> None:
    _, h = await api.tenant("acme")
    csrf = await sign_in(api.client, key_of(h))
    copied = browser(api)  # someone who copied the cookie while the user was signed in
    copied.cookies.set("omium_session", api.client.cookies["omium_session"])
    assert (await copied.get("/executions")).status_code == 200
    out = await api.client.post("/logout", data={"csrf_token": csrf})
    assert out.status_code == 303
    page = await copied.get("/executions")
    assert page.status_code == 303 and page.headers["location"].startswith("/login")
    # The key itself still works: a new sign-in is a new session.
    assert await sign_in(api.client, key_of(h))
    assert (await api.client.get("/executions")).status_code == 200
    await copied.aclose()


async def test_a_bad_key_is_a_401_that_says_so(api: Api) -> None:
    form = await api.client.get("/login")
    token = CSRF.search(form.text)
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
    token = CSRF.search(form.text)
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
