"""The LangGraph researcher: ``read`` notes the facts in the sources that bear on the claim,
``judge`` weighs them; two calls to LangChain's ``ChatOpenAI`` on the endpoint Omium lends the
agent (each node is a checkpointed super-step: a killed run resumes after the last one)."""

from __future__ import annotations

from typing import Any, TypedDict

from langchain_core.messages import HumanMessage, SystemMessage
from langchain_openai import ChatOpenAI
from langgraph.graph import END, START, StateGraph

from examples.research_team.verdicts import ANSWER_FORMAT, read_verdict, sources_text


class Research(TypedDict, total=False):
    claim: str
    sources: list[dict[str, Any]]
    notes: str
    final: str
    reason: str


def researcher(ctx: Any) -> StateGraph:
    """``ctx``: the agent's context (or anything with ``llm_base_url``, ``llm_api_key`` and
    ``llm_model``: the benchmark points it straight at a server)."""
    llm = ChatOpenAI(model=ctx.llm_model or "", base_url=ctx.llm_base_url,
                     api_key=ctx.llm_api_key, temperature=0, max_tokens=160, max_retries=0)

    async def read(state: Research) -> dict[str, Any]:
        reply = await llm.ainvoke([
            SystemMessage("You are a research assistant. Quote only what the sources say."),
            HumanMessage(f"Claim: {state['claim']}\nSources:\n{sources_text(state['sources'])}"
                         "\nList the facts in the sources that bear on the claim.")])
        return {"notes": str(reply.content)}

    async def judge(state: Research) -> dict[str, Any]:
        reply = await llm.ainvoke([
            SystemMessage("You are a careful fact-checker."),
            HumanMessage(f"Claim: {state['claim']}\nEvidence: {state['notes']}\n"
                         f"Is the claim supported by the evidence? {ANSWER_FORMAT}")])
        final, reason = read_verdict(str(reply.content))
        return {"final": final, "reason": reason}

    builder = StateGraph(Research)
    builder.add_node("read", read)
    builder.add_node("judge", judge)
    builder.add_edge(START, "read")
    builder.add_edge("read", "judge")
    builder.add_edge("judge", END)
    return builder
