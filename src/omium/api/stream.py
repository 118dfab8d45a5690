"""Server-sent events for one execution, derived by polling ``execution_detail``.

Each poll emits only what is new since the last one: ``status`` (a change), ``handoff``,
``checkpoint`` (an agent finished), ``vote``, ``event`` (rows of the events table: failures,
recoveries, reviews...), ``agent_started`` (derived: an agent whose dependencies are all
checkpointed but which has none itself, while the execution runs), and finally ``finished``
once the execution is completed, failed, cancelled or awaiting review; then the stream ends.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from omium.api import detail as shape
from omium.status import TERMINAL, Status
from omium.store.base import ExecutionStore
from omium.store.records import ExecutionDetail

KEEPALIVE_S = 15.0
Message = tuple[str, dict[str, Any]]


def sse(kind: str, data: dict[str, Any]) -> str:
    # json.dumps escapes newlines inside strings, so the data is always one line.
    return f"event: {kind}\ndata: {json.dumps(data, default=str, separators=(',', ':'))}\n\n"


class EventDiff:
    """What changed between successive snapshots of one execution."""

    def __init__(self, deps: dict[str, list[str]] | None) -> None:
        self.deps = deps  # agent node -> its dependencies; None: agent_started is not derived
        self.status: str | None = None
        self.seen = {"checkpoints": 0, "handoffs": 0, "consensus": 0, "events": 0}
        self.started: set[str] = set()
        self.finished = False

    def _new(self, snapshot: ExecutionDetail, part: str) -> list[Any]:
        recs: list[Any] = getattr(snapshot, part)[self.seen[part]:]  # every list only grows
        self.seen[part] += len(recs)
        return recs

    def step(self, snapshot: ExecutionDetail) -> list[Message]:
        rec = snapshot.execution
        out: list[Message] = []
        # What happened first, then the status it led to, then what runs now.
        out += [("handoff", h) for h in shape.handoffs(self._new(snapshot, "handoffs"))]
        for cp in shape.checkpoints(self._new(snapshot, "checkpoints")):
            self.started.discard(cp["agent_id"])
            out.append(("checkpoint", cp))
        out += [("vote", v) for v in shape.votes(self._new(snapshot, "consensus"))]
        out += [("event", e) for e in shape.events(self._new(snapshot, "events"))]
        if rec.status != self.status:
            self.status = rec.status
            out.append(("status", {"status": self.status}))
        if self.status == Status.RUNNING and self.deps is not None:
            live = {c.agent_id for c in snapshot.checkpoints if not c.superseded}
            for node, deps in self.deps.items():
                if node not in live and node not in self.started and all(
                        d in live for d in deps):
                    self.started.add(node)
                    out.append(("agent_started", {"agent_id": node}))
        if self.status in TERMINAL:
            self.finished = True
            out.append(("finished", {
                "status": self.status, "decision": rec.decision,
                "failed_agent": rec.failed_agent, "failure_type": rec.failure_type,
                "error": rec.error}))
        return out


async def execution_events(store: ExecutionStore, execution_id: str, tenant_id: str,
                           first: ExecutionDetail,
                           deps: dict[str, list[str]] | None, *, poll_s: float,
                           max_s: float) -> AsyncIterator[str]:
    diff = EventDiff(deps)
    snapshot: ExecutionDetail | None = first
    deadline = time.monotonic() + max_s
    quiet_since = time.monotonic()
    while True:
        if snapshot is None:  # deleted meanwhile
            yield sse("finished", {"status": None, "error": "execution not found"})
            return
        for kind, data in diff.step(snapshot):
            quiet_since = time.monotonic()
            yield sse(kind, data)
        if diff.finished:
            return
        now = time.monotonic()
        if now >= deadline:
            yield sse("timeout", {"status": diff.status, "after_s": max_s})
            return
        if now - quiet_since >= KEEPALIVE_S:  # a comment keeps proxies from timing out
            quiet_since = now
            yield ": keepalive\n\n"
        await asyncio.sleep(poll_s)
        snapshot = await store.execution_detail(execution_id, tenant_id)
