"""Records for the store's conformance suite (tests/test_store*.py) and its neighbours."""

from __future__ import annotations

import time
from typing import Any

from omium.store.records import CheckpointRecord, ExecutionRecord, HandoffRecord, UsageRecord


def execution(execution_id: str, **kw: Any) -> ExecutionRecord:
    return ExecutionRecord(execution_id, "wf", {"name": "wf", "agents": []}, {"x": 1}, **kw)


def checkpoint(execution_id: str, agent_id: str, output: Any = None) -> CheckpointRecord:
    now = time.time()
    return CheckpointRecord(execution_id, agent_id, 0, 1, output or {"a": agent_id}, now, now)


def handoff(execution_id: str, to: str = "b", status: str = "success") -> HandoffRecord:
    return HandoffRecord(execution_id, "a", [to], status, {to: {"ack": True, "reason": None}},
                         None, None, 0.2, time.time())


def usage(key: str, tenant_id: str, cost_nano: int, **kw: Any) -> UsageRecord:
    return UsageRecord(key, tenant_id, "b", "smollm2", "local", 10, 20, cost_nano, 1.5, **kw)
