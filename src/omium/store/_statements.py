"""The writes of an execution's history as statements (run behind the lease fence: _fence.py).

Statements, not calls: the store batches several into one transaction (a checkpoint with its
handoffs, events and vote; a status change with the events that describe it).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from omium.store._driver import Statement
from omium.store._fence import fenced as fenced  # the stores call it as sql.fenced
from omium.store._rows import EXECUTION, dump
from omium.store.records import CheckpointRecord, ConsensusRecord, EventRecord, HandoffRecord

# What ``update_execution`` may set besides the status (keys of SQL text: never from users).
EXECUTION_FIELDS = ("decision", "result", "error", "failed_agent", "failure_type",
                    "finished_at", "lease_owner", "lease_expires_at", "lease_epoch",
                    "cancel_requested", "recoveries")


def event(ev: EventRecord) -> Statement:
    return ("INSERT INTO events (execution_id, ts, type, agent_id, data) "
            "VALUES (:e, :ts, :type, :agent, :data)",
            {"e": ev.execution_id, "ts": ev.ts or time.time(), "type": ev.type,
             "agent": ev.agent_id, "data": dump(ev.data)})


def handoff(h: HandoffRecord) -> Statement:
    return ("INSERT INTO handoffs (execution_id, from_agent, to_agents, status, acks, reason, "
            "error, latency_ms, created_at) VALUES (:e, :frm, :to, :status, :acks, :reason, "
            ":error, :lat, :ts)",
            {"e": h.execution_id, "frm": h.from_agent, "to": dump(h.to_agents),
             "status": h.status, "acks": dump(h.acks), "reason": h.reason, "error": h.error,
             "lat": h.latency_ms, "ts": h.created_at})


def checkpoint(cp: CheckpointRecord, epoch: int | None) -> Statement:
    return ("INSERT INTO checkpoints (execution_id, agent_id, agent_index, attempt, output, "
            "served_by, superseded, started_at, finished_at, created_at, lease_epoch) VALUES "
            "(:e, :agent, :idx, :attempt, :output, :served_by, 0, :started, :finished, :ts, "
            ":epoch)",
            {"e": cp.execution_id, "agent": cp.agent_id, "idx": cp.agent_index,
             "attempt": cp.attempt, "output": dump(cp.output), "served_by": cp.served_by,
             "started": cp.started_at, "finished": cp.finished_at, "ts": time.time(),
             "epoch": epoch or 0})


def consensus(rec: ConsensusRecord) -> Statement:
    return ("INSERT INTO consensus_results (execution_id, node_id, result, outcome, decision, "
            "agreement_level, created_at) VALUES (:e, :node, :result, :outcome, :decision, "
            ":level, :ts)",
            {"e": rec.execution_id, "node": rec.node_id, "result": dump(rec.result),
             "outcome": rec.outcome, "decision": dump(rec.decision),
             "level": rec.agreement_level, "ts": rec.created_at or time.time()})


def review_vote(execution_id: str, node_id: str, decision: str) -> Statement:
    """Record a human decision on the node's latest vote awaiting review (if it still is)."""
    return ("UPDATE consensus_results SET reviewed_decision = :d, reviewed_at = :ts "
            "WHERE id = (SELECT MAX(id) FROM consensus_results WHERE execution_id = :e "
            "AND node_id = :node AND outcome = 'manual_review') AND reviewed_decision IS NULL",
            {"d": decision, "ts": time.time(), "e": execution_id, "node": node_id})


def update_execution(execution_id: str, status: str, expect_status: Sequence[str] | None,
                     fields: dict[str, Any]) -> Statement:
    unknown = set(fields) - set(EXECUTION_FIELDS)
    if unknown:
        raise TypeError(f"unknown execution fields {sorted(unknown)}")
    params: dict[str, Any] = {"id": execution_id, "status": status, "ts": time.time()}
    sets = ["status = :status", "updated_at = :ts"]
    for key, value in fields.items():
        sets.append(f"{key} = :{key}")  # keys come from EXECUTION_FIELDS, never from users
        params[key] = dump(value) if key in EXECUTION.json else value
    where = "id = :id"
    if expect_status is not None:
        names = [f"s{i}" for i in range(len(expect_status))]
        where += f" AND status IN ({', '.join(':' + n for n in names)})"
        params.update(zip(names, expect_status, strict=True))
    return f"UPDATE executions SET {', '.join(sets)} WHERE {where}", params
