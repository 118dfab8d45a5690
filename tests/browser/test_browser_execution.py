"""One execution's page: its timeline and graph, its review, cancel and resume buttons (the
API's actions, their errors shown), and agents' output shown as text."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import Browser, Dialog, Locator, Page, expect

from tests.browser.conftest import (
    AGENTS,
    FAILS,
    SLEEPS,
    SPLIT_VOTE,
    V1,
    VOTE_THEN_GATE,
    Tenant,
    agent,
    sign_in,
)
from tests.browser.dashboard_agents import SCRIPT

# The middle agent fails twice, then succeeds: three attempts on the timeline.
RETRIES = {"name": "scoring", "agents": [
    agent("intake"),
    agent("score", "tests.agents_for_tests:flaky", retry={"max_attempts": 3, "backoff_s": 0.1}),
    agent("decide")]}


def _status(page: Page) -> Locator:
    return page.locator('[data-testid="execution-status"]')


def test_the_timeline_shows_every_attempt_and_the_graph_every_agent(
        signed_in: Page, tenant: Tenant, shot: Callable[[str], Path]) -> None:
    execution_id = tenant.run(RETRIES, {"applicant": "ann"})
    signed_in.goto("/executions")
    signed_in.locator(f'tr[data-execution-id="{execution_id}"] a').first.click()
    expect(signed_in).to_have_url(re.compile(f"/executions/{execution_id}$"))
    expect(_status(signed_in)).to_have_text("completed")
    timeline = signed_in.locator("section#timeline")
    expect(timeline.locator('[data-step="intake"]')).to_have_count(1)
    expect(timeline.locator('[data-step="score"]')).to_have_count(3)  # two failures, a success
    expect(timeline.locator('[data-step="decide"]')).to_have_count(1)
    graph = signed_in.locator("section#graph svg")
    expect(graph).to_be_visible()
    for node in ("intake", "score", "decide"):
        expect(graph.locator(f'[data-node="{node}"]')).to_have_count(1)
    expect(signed_in.locator("section#handoffs")).to_contain_text("intake")
    expect(signed_in.locator("section#events")).to_contain_text("transient failure on attempt 1")
    expect(signed_in.locator("section#io details pre").first).to_contain_text("ann")
    for section in ("votes", "llm-calls", "lease"):
        expect(signed_in.locator(f"section#{section}")).to_be_attached()
    shot("execution")


def test_approving_a_review_completes_the_execution_live(
        signed_in: Page, tenant: Tenant, gates: Path, shot: Callable[[str], Path]) -> None:
    execution_id = tenant.run(VOTE_THEN_GATE)  # the voters split: it awaits review
    signed_in.goto(f"/executions/{execution_id}")
    expect(_status(signed_in)).to_have_text("awaiting_review")
    votes = signed_in.locator("section#votes")
    expect(votes).to_contain_text("approve")
    expect(votes).to_contain_text("reject")
    expect(signed_in.locator("form#cancel-form")).to_be_visible()
    shot("execution-review")
    form = signed_in.locator("form#review-form")
    form.locator('input[name="reviewer"]').fill("ann")
    form.locator('textarea[name="comment"]').fill("checked the documents by hand")
    form.locator('button[name="decision"][value="approve"]').click()
    # Reviewed, the run goes on to the gate agent, which holds it until the test opens it.
    expect(_status(signed_in)).to_have_text(re.compile(r"^(queued|running)$"))
    expect(signed_in.locator("form#review-form")).to_have_count(0)
    signed_in.evaluate("() => { window.sameDocument = true }")  # gone if the page reloads
    (gates / execution_id).touch()
    expect(_status(signed_in)).to_have_text("completed")
    assert signed_in.evaluate("() => window.sameDocument === true")
    # The same action as the API's: the reviewer and the comment are in the audit trail.
    events = tenant.http.get(f"{V1}/executions/{execution_id}").json()["events"]
    review = next(e for e in events if e["type"] == "review")
    assert review["data"]["reviewer"] == "ann"
    assert review["data"]["comment"] == "checked the documents by hand"
    assert review["data"]["decision"] == "approve"


def test_a_review_decided_elsewhere_shows_the_apis_refusal(
        browser: Browser, server: str, tenant: Tenant) -> None:
    # A stale page: without scripts nothing refreshes it (its forms work all the same).
    context = browser.new_context(base_url=server, java_script_enabled=False)
    try:
        page = context.new_page()
        sign_in(page, tenant.key)
        execution_id = tenant.run(SPLIT_VOTE)
        page.goto(f"/executions/{execution_id}")
        expect(_status(page)).to_have_text("awaiting_review")
        r = tenant.http.post(f"{V1}/executions/{execution_id}/review",
                             json={"decision": "reject", "reviewer": "bob"})
        assert r.status_code == 202, r.text  # decided behind the page's back
        assert tenant.wait(execution_id) == "completed"
        page.locator('form#review-form input[name="reviewer"]').fill("ann")
        with page.expect_response(re.compile(r"/review$")) as answer:
            page.locator('form#review-form button[name="decision"][value="approve"]').click()
        assert answer.value.status == 409
        api = tenant.http.post(f"{V1}/executions/{execution_id}/review",
                               json={"decision": "approve", "reviewer": "ann"})
        assert api.status_code == 409  # the page's refusal is the API's, word for word
        expect(page.locator('[role="alert"]')).to_have_text(api.json()["detail"])
        expect(_status(page)).to_have_text("completed")
    finally:
        context.close()


def test_cancelling_a_running_execution(signed_in: Page, tenant: Tenant,
                                        shot: Callable[[str], Path]) -> None:
    execution_id = tenant.submit(SLEEPS)
    tenant.wait(execution_id, "running")
    signed_in.goto(f"/executions/{execution_id}")
    expect(_status(signed_in)).to_have_text("running")
    shot("execution-running")
    signed_in.locator('form#cancel-form [type="submit"]').click()
    expect(_status(signed_in)).to_have_text("cancelled")  # the worker stops the sleeping agent
    expect(signed_in.locator("form#cancel-form")).to_have_count(0)
    assert tenant.http.get(f"{V1}/executions/{execution_id}").json()["status"] == "cancelled"


def test_resuming_a_failed_execution(signed_in: Page, tenant: Tenant) -> None:
    execution_id = tenant.run(FAILS)
    signed_in.goto(f"/executions/{execution_id}")
    expect(_status(signed_in)).to_have_text("failed")
    expect(signed_in.locator("section#events")).to_contain_text("agent exploded")
    signed_in.locator('form#resume-form [type="submit"]').click()
    expect(signed_in.locator("section#events")).to_contain_text("resumed")
    # Queued again, the agent fails again, as the API's record says.
    expect(_status(signed_in)).to_have_text("failed")
    kinds = [e["type"] for e in
             tenant.http.get(f"{V1}/executions/{execution_id}").json()["events"]]
    assert kinds.count("resumed") == 1 and kinds.count("failure_detected") == 2


def test_an_agents_script_output_is_shown_as_text(signed_in: Page, tenant: Tenant) -> None:
    dialogs: list[str] = []

    def dismiss(d: Dialog) -> None:
        dialogs.append(d.message)
        d.dismiss()

    signed_in.on("dialog", dismiss)
    execution_id = tenant.run({"name": "hostile",
                               "agents": [agent("writer", f"{AGENTS}:script_output")]})
    signed_in.goto(f"/executions/{execution_id}")
    expect(_status(signed_in)).to_have_text("completed")
    expect(signed_in.locator("section#io")).to_contain_text(SCRIPT)  # the characters, as text
    # No element came of it: the only scripts are the page's own (vendored, by src).
    expect(signed_in.locator("script", has_text="alert(1)")).to_have_count(0)
    signed_in.goto("/executions")  # the list and a return trip: still no dialog
    expect(signed_in.locator(f'tr[data-execution-id="{execution_id}"]')).to_be_visible()
    assert dialogs == []
