"""The dashboard's actions in-process: review, answer, cancel and resume from the page, and the
start form, each landing in the store through the same commands as the API and the CLI."""

from __future__ import annotations

import re

from omium.agents.runtime import ReviewRequested, current_runtime
from tests._api_harness import LOAN, V1, VOTE, Api, agent, sequential
from tests._dashboard_util import BOOM, key_of, paused, sign_in, status_of


def ask(inputs: object) -> dict[str, str]:
    """Asks a human a question; run again with the answer, returns it (an agent of the test)."""
    runtime = current_runtime()
    if runtime is None or runtime.review is None:
        raise ReviewRequested("Which plan, A or B?")
    return {"answer": runtime.review.decision}


ASK = {"name": "ask", "agents": [agent("asker", "tests.test_dashboard_actions:ask")]}


# -- actions: the commands the API and the CLI call


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
    # Outside the body the page refreshes while live: the reason stays until the user leaves.
    assert r.text.index('role="alert"') < r.text.index('id="execution-body"')
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
