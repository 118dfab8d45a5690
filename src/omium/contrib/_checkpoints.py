"""JSON checkpoints that a framework adapter keeps inside one agent call (AutoGen's team state,
CrewAI's finished tasks), in the store's graph-checkpoint tables under the adapter's namespace.

The thread is derived from the execution and agent, the same on every attempt and resume, and a
new one after a rollback (as for LangGraph), so a call finds where the last one left off. Writes
are fenced by the run's lease epoch like the run's own. Outside an Omium run nothing is kept."""

from __future__ import annotations

import asyncio
import json
from typing import Any, cast

from omium.agents.base import AgentContext
from omium.agents.runtime import AgentRuntime
from omium.store.base import ExecutionStore, GraphCheckpointStore
from omium.store.records import GraphCheckpoint


async def thread_id(store: ExecutionStore, ctx: AgentContext, namespace: str) -> str:
    """The agent's thread: the same on every attempt and every resume, a new one each time a
    rollback sends the agent (or the node it feeds) back to run again."""
    redone = sum(1 for ev in await store.get_events(ctx.execution_id) if ev.type == "rollback"
                 and (ev.agent_id == ctx.agent_id
                      or ctx.agent_id in (ev.data.get("upstream") or ())))
    return f"{ctx.idempotency_key}:{namespace}" + (f":{redone}" if redone else "")


class JsonCheckpoints:
    """The agent's checkpoints on its thread: ``latest()`` is the last one ``put``."""

    def __init__(self, ctx: AgentContext, runtime: AgentRuntime | None, namespace: str,
                 source: str) -> None:
        self.ctx, self.runtime, self.namespace, self.source = ctx, runtime, namespace, source
        self.store: GraphCheckpointStore | None = None
        if runtime is not None and hasattr(runtime.store, "put_graph_checkpoint"):
            self.store = cast(GraphCheckpointStore, runtime.store)
        self.thread, self.seq, self.parent = ctx.idempotency_key, 0, None

    async def latest(self) -> dict[str, Any] | None:
        if self.store is None or self.runtime is None:
            return None
        # The thread's checkpoint is read alongside the events that name the thread, for
        # the thread an agent never rolled back has (nearly always the one): one round trip
        # to the store instead of two; after a rollback it is read again on the right one.
        first = f"{self.ctx.idempotency_key}:{self.namespace}"
        self.thread, cp = await asyncio.gather(
            thread_id(self.runtime.store, self.ctx, self.namespace),
            self.store.get_graph_checkpoint(first, self.namespace))
        if self.thread != first:
            cp = await self.store.get_graph_checkpoint(self.thread, self.namespace)
        if cp is None:
            return None
        self.seq, self.parent = int(cp.checkpoint_id), cp.checkpoint_id
        return cast(dict[str, Any], json.loads(cp.checkpoint))

    async def put(self, record: dict[str, Any]) -> None:
        if self.store is None or self.runtime is None:
            return
        self.seq += 1
        cid = f"{self.seq:012d}"  # ids order as their bytes do: the newest is the last
        await self.store.put_graph_checkpoint(GraphCheckpoint(
            self.thread, self.namespace, cid, self.parent, "json",
            json.dumps(record, default=str).encode(), {"source": self.source},
            execution_id=self.ctx.execution_id), epoch=self.runtime.epoch)
        self.parent = cid
