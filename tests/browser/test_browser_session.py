"""Signing in and out of the dashboard, and what a session may see."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import Page, expect

from tests._serve_process import ADMIN
from tests.browser.conftest import Tenant, make_tenant, sequential, sign_in


def test_sign_in_with_a_tenant_key_opens_its_executions(page: Page, tenant: Tenant,
                                                         shot: Callable[[str], Path]) -> None:
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/login$"))  # not signed in: / goes to the form
    shot("login")
    sign_in(page, tenant.key)
    expect(page.locator('[data-testid="tenant"]')).to_have_text(tenant.id)
    header = page.locator("header")
    for href in ("/executions", "/workflows", "/llm"):
        expect(header.locator(f'a[href="{href}"]')).to_be_visible()
    expect(page.locator("select#tenant-switch")).to_have_count(0)  # a tenant's key: no switcher


def test_a_wrong_key_is_refused_with_an_error(page: Page, shot: Callable[[str], Path]) -> None:
    page.goto("/login")
    page.fill('#login-form input[name="api_key"]', "omk_not-a-real-key")
    with page.expect_response(re.compile(r"/login$")) as answer:
        page.click('#login-form button[type="submit"]')
    assert answer.value.status == 401
    expect(page.locator('p.error[role="alert"]')).to_be_visible()
    expect(page).to_have_url(re.compile(r"/login$"))
    shot("login-refused")
    page.goto("/executions")  # and no session came of it
    expect(page).to_have_url(re.compile(r"/login$"))


def test_the_key_lives_only_in_an_http_only_same_site_cookie(signed_in: Page,
                                                             tenant: Tenant) -> None:
    cookies = {c["name"]: c for c in signed_in.context.cookies()}
    session = cookies["omium_session"]
    assert session["httpOnly"] is True
    assert session["sameSite"] in ("Strict", "Lax")
    assert tenant.key not in session["value"]
    # Scripts in the page can reach none of it.
    seen = signed_in.evaluate("() => [document.cookie, JSON.stringify(localStorage),"
                              " JSON.stringify(sessionStorage), location.href]")
    assert all(tenant.key not in s for s in seen), seen
    assert "omium_session" not in seen[0]


def test_sign_out_ends_the_session(signed_in: Page) -> None:
    signed_in.click("#logout")
    expect(signed_in).to_have_url(re.compile(r"/login$"))
    signed_in.goto("/executions")
    expect(signed_in).to_have_url(re.compile(r"/login$"))
    expect(signed_in.locator("#login-form")).to_be_visible()


def test_another_tenants_execution_is_not_found(signed_in: Page, tenant: Tenant, server: str,
                                                shot: Callable[[str], Path]) -> None:
    other = make_tenant(server, "other")
    theirs = other.run(sequential("theirs", n=1))
    other.http.close()
    response = signed_in.goto(f"/executions/{theirs}")
    assert response is not None and response.status == 404
    expect(signed_in.locator("h1")).to_contain_text("not found")
    shot("execution-not-found")
    # Nor is it listed; the same page for an id nobody has.
    signed_in.goto("/executions")
    expect(signed_in.locator(f'tr[data-execution-id="{theirs}"]')).to_have_count(0)
    response = signed_in.goto("/executions/ex_nobody_has_this")
    assert response is not None and response.status == 404
    expect(signed_in.locator("h1")).to_contain_text("not found")


def test_an_admin_key_switches_between_tenants(page: Page, tenant: Tenant, server: str,
                                               shot: Callable[[str], Path]) -> None:
    other = make_tenant(server, "globex")
    mine, theirs = tenant.run(sequential("mine", n=1)), other.run(sequential("theirs", n=1))
    sign_in(page, ADMIN)
    switch = page.locator("select#tenant-switch")
    expect(switch).to_be_visible()
    for shown, hidden, tenant_id in ((mine, theirs, tenant.id), (theirs, mine, other.id)):
        # Chosen without a change event (which may submit the form itself): one submit.
        switch.evaluate("(select, value) => { select.value = value }", tenant_id)
        page.locator('form:has(select#tenant-switch) [type="submit"]').click()
        expect(page.locator('[data-testid="tenant"]')).to_have_text(tenant_id)
        expect(page.locator(f'tr[data-execution-id="{shown}"]')).to_be_visible()
        expect(page.locator(f'tr[data-execution-id="{hidden}"]')).to_have_count(0)
    shot("executions-admin")
    other.http.close()
