"""A CrewAI crew whose first tasks run concurrently (``async_execution=True``) and feed a
last, synchronous one: each finished task is checkpointed, and a retry after the last task
failed asks neither of the concurrent ones again, giving both back as its context."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("crewai")

from crewai import Crew, Process, Task

from omium.agents.base import AgentContext
from omium.store.base import Store
from omium.testing.fake_server import Behaviour
from tests._gateway_util import fake_backends
from tests.crewai_crews import analyst
from tests.test_crewai import run_retried_crew, task_of


def two_checks_then_verdict(ctx: AgentContext) -> Crew:
    # One agent per concurrent task: CrewAI runs an agent's tasks one at a time.
    a, b, c = analyst(ctx), analyst(ctx), analyst(ctx)
    income = Task(name="income", description="income of {name} #reply=income-ok",
                  expected_output="notes", agent=a, async_execution=True)
    history = Task(name="history", description="history of {name} #reply=history-ok",
                   expected_output="notes", agent=b, async_execution=True)
    verdict = Task(name="verdict", description="verdict on {name}", expected_output="a verdict",
                   agent=c, context=[income, history])
    return Crew(agents=[a, b, c], process=Process.sequential, tasks=[income, history, verdict])


async def test_a_retry_after_concurrent_tasks_asks_neither_again(
        store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with fake_backends(tmp_path, monkeypatch) as (local, _):
        # Both checks answer; the verdict's call is refused (400: no fallback), so the attempt
        # fails after both were checkpointed; the retry asks the verdict only.
        local.script(Behaviour(), Behaviour(), Behaviour(kind="fail", status=400))
        result = await run_retried_crew(store, f"{__name__}:two_checks_then_verdict")
        assert result.status == "completed", result.error
        asked = [task_of(r) for r in local.requests]
        assert sorted(asked[:2]) == ["history", "income"] and asked[2:] == ["verdict", "verdict"]
        out = result.results["credit"]
        assert [t["name"] for t in out["tasks"]] == ["income", "history", "verdict"]
        assert [t["raw"] for t in out["tasks"][:2]] == ["income-ok", "history-ok"]
        retried = local.requests[3]["messages"][-1]["content"]
        assert "income-ok" in retried and "history-ok" in retried  # both given back as context
