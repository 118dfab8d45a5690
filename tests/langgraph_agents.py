"""LangGraph graphs the tests run as ``framework: langgraph`` agents: plain Python nodes that
can record side effects, sleep (so a test can kill the process mid-graph), fail once, count
their runs, or ``interrupt()`` for a human."""

from __future__ import annotations

import json
import operator
import os
import time
from typing import Annotated, Any, TypedDict

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.types import interrupt

from omium.agents.base import AgentContext


class Steps(TypedDict, total=False):
    topic: str
    steps: Annotated[list[str], operator.add]
    n: int


def _effect(node: str) -> None:
    """Appends the node's name to $OMIUM_TEST_EFFECTS, then works $OMIUM_TEST_STEP_S."""
    if path := os.environ.get("OMIUM_TEST_EFFECTS"):
        with open(path, "a") as f:
            f.write(json.dumps(node) + "\n")
    time.sleep(float(os.environ.get("OMIUM_TEST_STEP_S", "0")))


def _node(name: str) -> Any:
    def run(state: Steps) -> dict[str, Any]:
        _effect(name)
        if os.environ.get("OMIUM_TEST_FAIL_NODE") == name:
            flag = os.environ["OMIUM_TEST_FAIL_ONCE"]
            if not os.path.exists(flag):  # fails on its first run only
                open(flag, "w").close()
                raise RuntimeError(f"node {name} failed")
        return {"steps": [name]}

    return run


def _pipeline() -> StateGraph:
    builder = StateGraph(Steps)
    for name in ("plan", "research", "write"):
        builder.add_node(name, _node(name))
    builder.add_edge(START, "plan")
    builder.add_edge("plan", "research")
    builder.add_edge("research", "write")
    builder.add_edge("write", END)
    return builder


# Every kind of reference the definition may name.
pipeline_builder = _pipeline()
pipeline = pipeline_builder.compile()


def pipeline_factory(ctx: AgentContext) -> Any:
    assert ctx.agent_id  # factories that take an argument get the call's context
    return _pipeline()


async def pipeline_async_factory() -> Any:
    return _pipeline().compile()


not_a_graph = 42


def _no_entry() -> StateGraph:
    builder = StateGraph(Steps)
    builder.add_node("orphan", _node("orphan"))
    return builder


broken_builder = _no_entry()


def counter_graph() -> Any:
    """One node: n = how many times it ran (counted in $OMIUM_TEST_COUNTER)."""
    def count(state: Steps) -> dict[str, Any]:
        path = os.environ["OMIUM_TEST_COUNTER"]
        n = (int(open(path).read()) if os.path.exists(path) else 0) + 1
        with open(path, "w") as f:
            f.write(str(n))
        return {"n": n}

    builder = StateGraph(Steps)
    builder.add_node("count", count)
    builder.add_edge(START, "count")
    builder.add_edge("count", END)
    return builder.compile()


class Chat(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]


def chat_graph() -> Any:
    """Answers the last message: messages in the output become {role, content}."""
    def answer(state: Chat) -> dict[str, Any]:
        last = state["messages"][-1].content
        return {"messages": [AIMessage(content=f"you said: {last}")]}

    builder = StateGraph(Chat)
    builder.add_node("answer", answer)
    builder.add_edge(START, "answer")
    builder.add_edge("answer", END)
    return builder.compile()


def chat_input() -> dict[str, Any]:
    return {"messages": [HumanMessage(content="hi")]}


class Approval(TypedDict, total=False):
    amount: int
    steps: Annotated[list[str], operator.add]
    first: str
    second: str


def approval_graph() -> Any:
    """prepare -> ask (interrupt) -> confirm (interrupt) -> done: two human decisions."""
    def prepare(state: Approval) -> dict[str, Any]:
        _effect("prepare")
        return {"steps": ["prepare"]}

    def ask(state: Approval) -> dict[str, Any]:
        _effect("ask")
        answer = interrupt({"question": "approve the payment?", "amount": state["amount"]})
        return {"steps": ["ask"], "first": answer}

    def confirm(state: Approval) -> dict[str, Any]:
        answer = interrupt("really?")
        return {"steps": ["confirm"], "second": answer}

    builder = StateGraph(Approval)
    for name, fn in (("prepare", prepare), ("ask", ask), ("confirm", confirm)):
        builder.add_node(name, fn)
    builder.add_edge(START, "prepare")
    builder.add_edge("prepare", "ask")
    builder.add_edge("ask", "confirm")
    builder.add_edge("confirm", END)
    return builder.compile()
