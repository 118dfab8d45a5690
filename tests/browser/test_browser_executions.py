"""The executions list: a tenant's executions newest first, their status counts, filters and
live updates, on SQLite and on PostgreSQL."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import Locator, Page, expect

from tests.browser.conftest import (
    AGENTS,
    FAILS,
    SPLIT_VOTE,
    Tenant,
    agent,
    dashboard_serve,
    make_tenant,
    sequential,
    sign_in,
)

GATED = {"name": "gated", "agents": [agent("gate", f"{AGENTS}:gate")]}


def _status(page: Page, execution_id: str) -> Locator:
    return page.locator(f'tr[data-execution-id="{execution_id}"] [data-testid="status"]')


def _seed_three(t: Tenant) -> list[tuple[str, str]]:
    """A completed, a failed and an awaiting-review execution, submitted in that order."""
    return [(t.run(sequential("pipeline")), "completed"), (t.run(FAILS), "failed"),
            (t.run(SPLIT_VOTE), "awaiting_review")]


def test_the_list_shows_completed_failed_and_awaiting_review(
        signed_in: Page, tenant: Tenant, shot: Callable[[str], Path]) -> None:
    seeded = _seed_three(tenant)
    signed_in.goto("/executions")
    for execution_id, status in seeded:
        expect(_status(signed_in, execution_id)).to_have_text(status)
    rows = signed_in.locator("#executions tr[data-execution-id]")
    expect(rows).to_have_count(3)  # this tenant's only
    newest_first = [ex for ex, _ in reversed(seeded)]
    assert [rows.nth(i).get_attribute("data-execution-id") for i in range(3)] == newest_first
    for status in ("completed", "failed", "awaiting_review"):
        expect(signed_in.locator(f'[data-status-count="{status}"]')).to_contain_text("1")
    shot("executions")


def test_filters_by_status_and_finds_an_id(signed_in: Page, tenant: Tenant) -> None:
    _, (failed, _), (review, _) = _seed_three(tenant)
    signed_in.goto("/executions?status=failed")
    expect(_status(signed_in, failed)).to_have_text("failed")
    expect(signed_in.locator("#executions tr[data-execution-id]")).to_have_count(1)
    signed_in.goto(f"/executions?q={review}")
    expect(_status(signed_in, review)).to_have_text("awaiting_review")
    expect(signed_in.locator("#executions tr[data-execution-id]")).to_have_count(1)


def test_new_executions_and_status_changes_appear_without_reloading(
        signed_in: Page, tenant: Tenant, gates: Path) -> None:
    signed_in.goto("/executions")
    expect(signed_in.locator("#executions")).to_be_visible()
    signed_in.evaluate("() => { window.sameDocument = true }")  # gone if the page reloads
    execution_id = tenant.submit(GATED)
    expect(_status(signed_in, execution_id)).to_have_text("running")
    (gates / execution_id).touch()  # let it finish
    expect(_status(signed_in, execution_id)).to_have_text("completed")
    expect(signed_in.locator('[data-status-count="completed"]')).to_contain_text("1")
    assert signed_in.evaluate("() => window.sameDocument === true")


def test_the_list_page_on_postgresql(pg_url: str, page: Page,
                                     shot: Callable[[str], Path]) -> None:
    with dashboard_serve(pg_url) as base:
        t = make_tenant(base, "pg")
        seeded = _seed_three(t)
        sign_in(page, t.key, base)
        for execution_id, status in seeded:
            expect(_status(page, execution_id)).to_have_text(status)
        expect(page.locator("#executions tr[data-execution-id]")).to_have_count(3)
        expect(page.locator('[data-status-count="failed"]')).to_contain_text("1")
        shot("executions-postgresql")
        page.goto(f"{base}/executions?status=completed")
        expect(page.locator("#executions tr[data-execution-id]")).to_have_count(1)
        expect(page).to_have_url(re.compile(r"status=completed"))
        t.http.close()
