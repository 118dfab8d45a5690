"""CrewAI crew factories for tests/test_crewai.py: their agents' LLM is CrewAI's own ``LLM`` on the
endpoint Omium lends the agent (``ctx.llm_*``), as the README tells users to. Task descriptions
carry the fake server's directives (``#usage=P/C``, ``#reply=TEXT``) where a test needs them."""

from __future__ import annotations

import os

from crewai import LLM, Agent, Crew, Process, Task
from pydantic import BaseModel

from omium.agents.base import AgentContext

VERDICT = '{"score":7,"approved":true}'  # what the verdict task's model call answers


class Verdict(BaseModel):
    score: int
    approved: bool


class Tasks(BaseModel):
    tasks: list[str]


def llm(ctx: AgentContext, model: str | None = None) -> LLM:
    return LLM(model=model or ctx.llm_model or "", base_url=ctx.llm_base_url,
               api_key=ctx.llm_api_key, max_retries=0)


def analyst(ctx: AgentContext, model: str | None = None) -> Agent:
    return Agent(role="analyst", goal="assess loan applicants", backstory="a credit analyst",
                 llm=llm(ctx, model), max_retry_limit=0)


def one_task(ctx: AgentContext) -> Crew:
    """One task, a plain-text answer, on the hosted model (billed per token)."""
    a = analyst(ctx, "gpt-3.5-turbo")
    return Crew(agents=[a], tasks=[Task(
        name="assess", description="assess {name} #usage=120/30", expected_output="notes",
        agent=a)])


def _research_then(ctx: AgentContext, **verdict: object) -> Crew:
    a = analyst(ctx)
    research = Task(name="research", description="research {name} #usage=50/10",
                    expected_output="notes", agent=a)
    decide = Task(name="verdict", description="decide on {name} asking {amount}"
                  f" #reply={VERDICT} #usage=70/20",
                  expected_output="a verdict", agent=a, **verdict)
    return Crew(agents=[a], tasks=[research, decide], process=Process.sequential)


def research_and_pydantic_verdict(ctx: AgentContext) -> Crew:
    return _research_then(ctx, output_pydantic=Verdict)


async def research_and_json_verdict(ctx: AgentContext) -> Crew:
    """An async factory; the last task declares ``output_json``."""
    return _research_then(ctx, output_json=Verdict)


def plan_research_write(ctx: AgentContext) -> Crew:
    """Three tasks in order, each given the earlier ones' outputs as its context."""
    # No retry inside CrewAI (it would re-ask a failed task itself): Omium's attempts retry.
    a = Agent(role="writer", goal="write reports", backstory="a writer", llm=llm(ctx),
              max_retry_limit=0)
    return Crew(agents=[a], tasks=[
        Task(name=name, description=f"{name} about {{topic}}", expected_output="text", agent=a)
        for name in ("plan", "research", "write")])


def without_ctx() -> Crew:
    """Takes no context (so it is called without one): its LLM is the fake server itself."""
    a = Agent(role="writer", goal="write", backstory="a writer", llm=LLM(
        model="smollm2", base_url=os.environ["CREW_TEST_BASE_URL"], api_key="unused",
        max_retries=0))
    return Crew(agents=[a], tasks=[Task(description="note {topic}", expected_output="text",
                                        agent=a)])


def reserved_field(ctx: AgentContext) -> Crew:
    a = analyst(ctx)
    return Crew(agents=[a], tasks=[Task(description="list", expected_output="tasks", agent=a,
                                        output_pydantic=Tasks)])


def not_a_crew(ctx: AgentContext) -> Agent:
    return analyst(ctx)
