"""Agents of three frameworks in one workflow (tests/test_frameworks_mixed.py): a CrewAI crew,
LangGraph graphs and an AutoGen team, each building its model client on the endpoint Omium
lends it (``ctx.llm_base_url``, ``ctx.llm_api_key``, ``ctx.llm_model``), as a user's would.

Each reviewer reads its own brief from the input into its prompt (``langgraph_brief``,
``crewai_brief``, ``autogen_brief``: top-level keys, as CrewAI interpolates task descriptions):
the tests put the fake OpenAI server's directives there (``#reply=approve``), so each reviewer
is told what to answer even when all three ask at once.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Literal, TypedDict

from langchain_core.messages import HumanMessage, SystemMessage
from langchain_openai import ChatOpenAI
from langgraph.graph import END, START, StateGraph
from pydantic import BaseModel

from omium.agents.base import AgentContext


def chat_model(ctx: AgentContext) -> ChatOpenAI:
    """LangChain's OpenAI chat model on Omium's gateway (no retries: a failure is the test's)."""
    return ChatOpenAI(model=ctx.llm_model or "", base_url=ctx.llm_base_url,
                      api_key=ctx.llm_api_key, max_retries=0, temperature=0)


def one_node(ctx: AgentContext, state: type, system: str, prompt: Callable[[Any], str],
             key: str) -> StateGraph:
    """A graph of one node that asks the model ``prompt(state)`` and keeps the answer in
    ``state[key]``."""
    llm = chat_model(ctx)

    async def ask(state: Any) -> dict[str, Any]:
        reply = await llm.ainvoke([SystemMessage(system), HumanMessage(prompt(state))])
        return {key: str(reply.content).strip()}

    builder = StateGraph(state)
    builder.add_node("ask", ask)
    builder.add_edge(START, "ask")
    builder.add_edge("ask", END)
    return builder


# -- LangGraph: the fraud check after KYC, and one of three reviewers ------------------------

class Fraud(TypedDict, total=False):
    customer_verified: bool
    risk_score: float
    decision: str


class Review(TypedDict, total=False):
    applicant: dict[str, Any]
    langgraph_brief: str
    final: str


def fraud_graph(ctx: AgentContext) -> StateGraph:
    """Given KYC's verdict (the handoff), approve or reject."""
    return one_node(ctx, Fraud, "You are a fraud analyst. Answer approve or reject.",
                    lambda s: f"Customer verified: {s['customer_verified']}; "
                              f"KYC risk score: {s['risk_score']}.", "decision")


def reviewer_graph(ctx: AgentContext) -> StateGraph:
    """The answer is the vote (``final``, the field AutoGen's output has)."""
    return one_node(ctx, Review, "You review loan applicants. Answer approve or reject.",
                    lambda s: f"Applicant: {json.dumps(s['applicant'])}. "
                              f"{s.get('langgraph_brief', '')}", "final")


# -- AutoGen: one of three reviewers ---------------------------------------------------------

def reviewer_team(ctx: AgentContext) -> Any:
    """One AssistantAgent on the gateway; its last message is the output's ``final``."""
    from autogen_agentchat.agents import AssistantAgent

    from tests.autogen_teams import client

    return AssistantAgent("reviewer", model_client=client(ctx),
                          system_message="You review loan applicants. Answer approve or reject.")


# -- CrewAI: KYC, and one of three reviewers -------------------------------------------------

class Kyc(BaseModel):
    customer_verified: bool
    risk_score: float


class Vote(BaseModel):
    final: Literal["approve", "reject"]


def crew_llm(ctx: AgentContext) -> Any:
    """CrewAI's own OpenAI client on the gateway (``custom_openai``: whatever the model's
    name, not LiteLLM's guess of a provider from it)."""
    from crewai import LLM

    return LLM(model=ctx.llm_model or "", base_url=ctx.llm_base_url, api_key=ctx.llm_api_key,
               custom_openai=True, max_retries=0, temperature=0)


def one_task_crew(ctx: AgentContext, role: str, description: str, output: type[BaseModel]
                  ) -> Any:
    from crewai import Agent, Crew, Task

    agent = Agent(role=role, goal=f"Act as a careful {role}", backstory="You work for a bank.",
                  llm=crew_llm(ctx), allow_delegation=False)
    task = Task(description=description, expected_output=f"a {output.__name__} verdict",
                agent=agent, output_pydantic=output)
    return Crew(agents=[agent], tasks=[task])


def kyc_crew(ctx: AgentContext) -> Any:
    """One task: verify the applicant; the answer is a ``Kyc`` model (the handoff)."""
    return one_task_crew(ctx, "KYC analyst", "Verify the identity of the applicant {applicant}.",
                         Kyc)


def reviewer_crew(ctx: AgentContext) -> Any:
    """One task: approve or reject; the answer is a ``Vote`` (``final``)."""
    return one_task_crew(ctx, "loan reviewer",
                         "Review the applicant {applicant}. {crewai_brief}", Vote)
