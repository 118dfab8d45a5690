"""What the dashboard tests share: signing in through the form, a second browser, and the
workflows they pause or fail."""

from __future__ import annotations

import re

import httpx

from tests._api_harness import Api, agent

BOOM = {"name": "boom", "agents": [agent("ok"), agent("bad", "tests.agents_for_tests:boom")]}
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def key_of(headers: dict[str, str]) -> str:
    return headers["Authorization"].removeprefix("Bearer ")


async def sign_in(client: httpx.AsyncClient, key: str) -> str:
    """Sign in through the login form; returns the session's CSRF token."""
    form = await client.get("/login")
    token = CSRF.search(form.text)
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


async def paused(api: Api, workflow: dict[str, object]) -> tuple[str, str, str]:
    """A tenant's execution awaiting review, and the tenant signed in: (tenant, id, csrf)."""
    tid, h = await api.tenant("acme")
    ex = await api.submit(h, workflow=workflow)
    assert (await api.drive(tid, ex)).status == "awaiting_review"
    return tid, ex, await sign_in(api.client, key_of(h))
