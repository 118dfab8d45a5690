"""The workflows page: a tenant's registered definitions, drawn, and a form that starts an
execution with JSON inputs validated as the API does; and the LLM and cost page."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import Page, expect

from tests._processes import omium
from tests.browser.conftest import VOTE_THEN_GATE, Tenant, agent

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
    tenant.register(VOTE_THEN_GATE)  # a DAG beside it, on the list
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


def test_the_llm_page_shows_circuits_plan_figures_spend_and_balance(
        signed_in: Page, tenant: Tenant, server_db: str, shot: Callable[[str], Path]) -> None:
    added = omium("credits", "add", tenant.id, "100", "--db", server_db, env=dict(os.environ),
                  stdout=subprocess.DEVNULL)
    assert added.wait(30) == 0
    # Through the serve's gateway, billed to the tenant: three local calls (the first tried
    # "edge", which is down: its circuit opens and the call falls back) and a hosted one.
    for model, tokens in [("smollm2", "40/12")] * 3 + [("gpt-3.5-turbo", "1234/567")]:
        r = tenant.http.post("/v1/chat/completions", json={
            "model": model, "messages": [{"role": "user", "content": f"hi #usage={tokens}"}]})
        assert r.status_code == 200, r.text
    signed_in.goto("/llm?window=24h")
    backends = signed_in.locator("table#backends")
    expect(backends.locator('[data-backend="edge"]')).to_contain_text("open")
    expect(backends.locator('[data-backend="edge"]')).to_contain_text(
        re.compile(r"cannot connect to 127\.0\.0\.1:\d+: .*Connection refused"))
    expect(backends.locator('[data-backend="local"]')).to_contain_text("closed")
    expect(backends.locator('[data-backend="openai"]')).to_contain_text("closed")
    expect(signed_in.locator('[data-testid="local-share"]')).to_contain_text("75.0%")
    expect(signed_in.locator('[data-testid="fallback-success"]')).to_contain_text("100.0%")
    expect(signed_in.locator('[data-testid="cost-saved"]')).to_contain_text("%")
    # 100 credits less 3 local calls ($0.001 each) and 1,234 + 567 hosted tokens ($0.0014675).
    expect(signed_in.locator('[data-testid="balance"]')).to_contain_text("99.55325")
    for chart in ("#spend-per-day", "#spend-per-model"):  # drawn by the vendored uPlot
        expect(signed_in.locator(f"{chart} canvas").first).to_be_visible()
    per_model = json.loads(signed_in.locator("#spend-per-model").get_attribute("data-series")
                           or "{}")
    assert dict(zip(per_model["labels"], per_model["values"], strict=True)) == {
        "gpt-3.5-turbo": 0.0014675, "smollm2": 0.003}
    shot("llm")
