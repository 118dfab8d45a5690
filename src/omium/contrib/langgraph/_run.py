"""Running one LangGraph agent call: on its own thread of Omium's saver, resumed where the
graph stopped, paused when the graph interrupts.

Every call runs the graph with ``OmiumSaver`` under ``durability="sync"`` (a super-step's
checkpoint is written before the next step starts), on a thread derived from the execution
and agent. So a call finds the graph as the last one left it:

* no checkpoint yet: the graph starts with the agent's input;
* stopped between super-steps (the process was killed, a node raised, a timeout): it
  continues from the last completed one; nodes that finished do not run again;
* finished (the kill came after the graph, before Omium's own checkpoint): its final state
  is the output, nothing runs;
* waiting at an ``interrupt()``: the execution pauses for review (``ReviewRequested``, its
  key the interrupts' ids); the call that has the decision resumes the graph with
  ``Command(resume=decision)``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from typing import Any, cast

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver, CheckpointTuple
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.pregel import Pregel
from langgraph.types import Command, Interrupt

from omium.agents.base import AgentContext
from omium.agents.runtime import AgentRuntime, Review, ReviewRequested
from omium.contrib.langgraph._jsonable import jsonable
from omium.contrib.langgraph.saver import OmiumSaver
from omium.store.base import ExecutionStore, GraphCheckpointStore

INTERRUPT = "__interrupt__"


async def thread_id(store: ExecutionStore, ctx: AgentContext) -> str:
    """The agent's thread: the same on every attempt and every resume, and a new one each
    time a rollback sends the agent (or the node it feeds) back to run again, where its old
    thread would only hand back the old answer."""
    redone = sum(1 for ev in await store.get_events(ctx.execution_id) if ev.type == "rollback"
                 and (ev.agent_id == ctx.agent_id
                      or ctx.agent_id in (ev.data.get("upstream") or ())))
    return ctx.idempotency_key + (f":{redone}" if redone else "")


async def _saver(ctx: AgentContext, runtime: AgentRuntime | None
                 ) -> tuple[BaseCheckpointSaver[Any], str, CheckpointTuple | None]:
    """The saver, the agent's thread, and the thread's latest checkpoint."""
    if runtime is None or not hasattr(runtime.store, "put_graph_checkpoint"):
        # Outside an Omium run (a test, a script), or a store without graph checkpoints:
        # the graph runs, with nothing to resume from later.
        return InMemorySaver(), ctx.idempotency_key, None
    store = cast(GraphCheckpointStore, runtime.store)
    saver = OmiumSaver(store, execution_id=ctx.execution_id, epoch=runtime.epoch,
                       hold_input=True)
    # The checkpoint is read alongside the events that name the thread, for the thread an
    # agent never rolled back has (nearly always the one): one round trip to the store
    # instead of two; after a rollback it is read again on the right thread.
    first = ctx.idempotency_key
    thread, latest = await asyncio.gather(thread_id(runtime.store, ctx),
                                          saver.aget_tuple(_thread_config(first)))
    if thread != first:
        latest = await saver.aget_tuple(_thread_config(thread))
    if latest is None:
        saver.known_empty(thread)  # LangGraph's own first read needs no second trip
    return saver, thread, latest


def _thread_config(thread: str) -> RunnableConfig:
    return {"configurable": {"thread_id": thread}}


def _key(interrupts: Sequence[Interrupt]) -> str:
    return ",".join(sorted(i.id for i in interrupts))


def _request(interrupts: Sequence[Interrupt]) -> ReviewRequested:
    values = [jsonable(i.value) for i in interrupts]
    return ReviewRequested(values[0] if len(values) == 1 else values, _key(interrupts))


def _resume(interrupts: Sequence[Interrupt], review: Review) -> Command[Any]:
    if len(interrupts) == 1:
        return Command(resume=review.decision)
    return Command(resume={i.id: review.decision for i in interrupts})  # one decision, all


async def run_graph(graph: Pregel[Any, Any, Any, Any], inputs: Any, ctx: AgentContext,
                    runtime: AgentRuntime | None) -> Any:
    """The graph's final state, or ``ReviewRequested`` while it waits at an interrupt."""
    saver, thread, latest = await _saver(ctx, runtime)
    graph = graph.copy(update={"checkpointer": saver})
    config = _thread_config(thread)
    start: Any = inputs
    if latest is not None:
        state = await graph.aget_state(config)
        if state.interrupts:
            review = runtime.review if runtime is not None else None
            if review is None or review.key != _key(state.interrupts):
                raise _request(state.interrupts)  # still waiting for this very decision
            start = _resume(state.interrupts, review)
        elif state.next:
            start = None  # LangGraph's "continue from the last checkpoint"
        else:
            return state.values
    try:
        result = await graph.ainvoke(start, config, durability="sync")
    except BaseException:
        if isinstance(saver, OmiumSaver):  # what the graph's failure leaves is its own error
            with contextlib.suppress(Exception):
                await saver.aflush()
        raise
    if isinstance(saver, OmiumSaver):
        await saver.aflush()  # an input checkpoint no later one took (see hold_input)
    if isinstance(result, Mapping) and (pending := result.get(INTERRUPT)):
        raise _request(pending)
    return result
