"""A CrewAI crew resumed after a task with structured output (``output_pydantic``): the task's
checkpointed output comes back as the model it was (its fields in the final result, its JSON as
the next task's context), and the finished task is not asked again."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

pytest.importorskip("crewai")

from crewai import Agent, Crew, Process, Task

from omium.agents.base import AgentContext
from omium.store.base import Store
from omium.testing.fake_server import Behaviour, FakeOpenAIServer
from tests._gateway_util import fake_backends
from tests.crewai_crews import VERDICT, Verdict, llm
from tests.test_crewai import run_retried_crew, task_of


def verdict_then_letter(ctx: AgentContext) -> Crew:
    """A structured verdict first, then a letter written from it (its context)."""
    a = Agent(role="analyst", goal="decide and write", backstory="a credit analyst",
              llm=llm(ctx), max_retry_limit=0)
    return Crew(agents=[a], process=Process.sequential, tasks=[
        Task(name="verdict", description=f"verdict on {{name}} #reply={VERDICT}",
             expected_output="a verdict", agent=a, output_pydantic=Verdict),
        Task(name="letter", description="letter to {name}", expected_output="a letter",
             agent=a)])


@pytest.fixture
async def servers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                  ) -> AsyncIterator[tuple[FakeOpenAIServer, FakeOpenAIServer]]:
    async with fake_backends(tmp_path, monkeypatch) as (local, hosted):
        yield local, hosted


async def test_a_structured_task_output_survives_a_retry_of_the_crew(
        store: Store, servers: tuple[FakeOpenAIServer, FakeOpenAIServer]) -> None:
    local, _ = servers
    # verdict answers; letter's call is refused (400: no fallback), so the attempt fails after
    # verdict was checkpointed; the retry runs letter only.
    local.script(Behaviour(), Behaviour(kind="fail", status=400))
    result = await run_retried_crew(store, f"{__name__}:verdict_then_letter")
    assert result.status == "completed", result.error
    assert [task_of(r) for r in local.requests] == ["verdict", "letter", "letter"]
    out = result.results["credit"]
    verdict, letter = out["tasks"]
    assert (verdict["name"], letter["name"]) == ("verdict", "letter")
    assert json.loads(verdict["raw"]) == {"score": 7, "approved": True}
    # The restored verdict is what the retried letter task was given as its context.
    assert '"score"' in local.requests[2]["messages"][-1]["content"]
    assert out["raw"] == letter["raw"]  # the last task declares no model: its text
