"""The CrewAI analysts: an evidence researcher lists what the sources say, a judge decides
(its task's answer is a ``Verdict``); two calls through CrewAI's own OpenAI client on the
endpoint Omium lends the agent."""

from __future__ import annotations

from typing import Any

from crewai import LLM, Agent, Crew, Process, Task
from pydantic import BaseModel, field_validator

from examples.research_team.verdicts import ANSWER_FORMAT, read_verdict


class Verdict(BaseModel):
    final: str
    reason: str = ""

    @field_validator("final")
    @classmethod
    def _one_word(cls, value: str) -> str:
        # A model may write "Supported." or a sentence: the vote needs the one word.
        return read_verdict(value)[0]


def analysts(ctx: Any) -> Crew:
    """The crew; its task descriptions take ``{claim}`` and ``{sources}`` from the agent's
    input (CrewAI interpolates ``kickoff(inputs=...)``)."""
    # custom_openai: CrewAI's native OpenAI client whatever the model's name, rather than
    # a provider guessed from it ("HuggingFaceTB/..." would send it to LiteLLM).
    llm = LLM(model=ctx.llm_model or "", base_url=ctx.llm_base_url, api_key=ctx.llm_api_key,
              custom_openai=True, temperature=0, max_tokens=160, max_retries=0)
    researcher = Agent(role="Evidence researcher", goal="Find what the sources say",
                       backstory="You quote sources and never add facts.", llm=llm,
                       allow_delegation=False)
    judge = Agent(role="Fact-checking judge", goal="Decide whether a claim is supported",
                  backstory="You rule only on the evidence given.", llm=llm,
                  allow_delegation=False)
    evidence = Task(description="Claim: {claim}\nSources: {sources}\nList the facts in the "
                                "sources that bear on the claim.",
                    expected_output="a short list of facts", agent=researcher)
    verdict = Task(description="Is the claim '{claim}' supported by the evidence? "
                               + ANSWER_FORMAT,
                   expected_output="the verdict and one sentence of reason", agent=judge,
                   context=[evidence], output_pydantic=Verdict)
    return Crew(agents=[researcher, judge], tasks=[evidence, verdict],
                process=Process.sequential)
