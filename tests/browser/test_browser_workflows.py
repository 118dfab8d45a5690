"""The workflows page: a tenant's registered definitions, drawn, and a form that starts an
execution with JSON inputs validated as the API does; and the LLM and cost page."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import Page, expect

from tests.browser.conftest import Tenant, agent

INTAKE = {"name": "intake", "agents": [
    agent("check", input_schema={"type": "object", "required": ["applicant"],
                                 "properties": {"applicant": {"type": "string"}}}),
    agent("file")]}


def _open_workflow(page: Page, shot: Callable[[str], Path] | None = None) -> None:
    page.goto("/workflows")
    link = page.locator('a[data-workflow="intake"], [data-workflow="intake"] a').first
    expect(link).to_be_visible()
    if shot is not None:
        shot("workflows")
    link.click()
    expect(page).to_have_url(re.compile(r"/workflows/intake$"))


def test_starting_an_execution_from_the_workflows_page(
        signed_in: Page, tenant: Tenant, shot: Callable[[str], Path]) -> None:
    tenant.register(INTAKE)
    _open_workflow(signed_in, shot)
    for node in ("check", "file"):
        expect(signed_in.locator(f'svg [data-node="{node}"]')).to_have_count(1)
    shot("workflow")
    form = signed_in.locator("form#start-form")
    form.locator('textarea[name="inputs"]').fill('{"applicant": "ann"}')
    form.locator('[type="submit"]').click()
    expect(signed_in).to_have_url(re.compile(r"/executions/ex_[0-9a-f]+$"))
    expect(signed_in.locator('[data-testid="execution-status"]')).to_have_text("completed")
    execution_id = signed_in.url.rsplit("/", 1)[1]
    got = tenant.http.get(f"/api/v1/executions/{execution_id}").json()
    assert got["inputs"] == {"applicant": "ann"} and got["workflow_name"] == "intake"
    _open_workflow(signed_in)  # and it is among the workflow's recent executions
    expect(signed_in.locator(f'[data-execution-id="{execution_id}"]')).to_be_visible()


def test_inputs_the_api_would_refuse_are_refused_with_its_reason(
        signed_in: Page, tenant: Tenant) -> None:
    tenant.register(INTAKE)
    _open_workflow(signed_in)
    for inputs, reason in (('{"applicant": ', "JSON"), ('{"applicant": 7}', "applicant")):
        form = signed_in.locator("form#start-form")
        form.locator('textarea[name="inputs"]').fill(inputs)
        with signed_in.expect_response(re.compile(r"/workflows/intake")) as answer:
            form.locator('[type="submit"]').click()
        assert answer.value.status == 422
        expect(signed_in.locator('[role="alert"]')).to_contain_text(reason)
    listed = tenant.http.get("/api/v1/executions").json()["items"]
    assert listed == []  # nothing was started


def test_the_llm_page_shows_backends_plan_figures_and_spend(
        signed_in: Page, shot: Callable[[str], Path]) -> None:
    signed_in.goto("/llm?window=24h")
    expect(signed_in.locator("table#backends")).to_be_visible()
    for figure in ("local-share", "fallback-success", "cost-saved", "balance"):
        expect(signed_in.locator(f'[data-testid="{figure}"]')).to_be_visible()
    for chart in ("#spend-per-day", "#spend-per-model"):
        expect(signed_in.locator(chart)).to_be_attached()
    shot("llm")
