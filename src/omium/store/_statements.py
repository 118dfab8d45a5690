"""The writes of an execution's history as statements, and the lease fence batched with them.

Statements, not calls: the store batches several into one transaction (a checkpoint with its
handoffs, events and vote; a status change with the events that describe it).
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from omium.errors import StaleLeaseError
from omium.store._driver import Driver, NoRowsError, Statement
from omium.store._rows import EXECUTION, dump
from omium.store.records import CheckpointRecord, ConsensusRecord, EventRecord, HandoffRecord

# What ``update_execution`` may set besides the status (keys of SQL text: never from users).
EXECUTION_FIELDS = ("decision", "result", "error", "failed_agent", "failure_type",
                    "finished_at", "lease_owner", "lease_expires_at", "lease_epoch",
                    "cancel_requested", "recoveries")


def _fence(execution_id: str, epoch: int | None, dialect: str) -> list[Statement]:
    """A statement that changes (or, on PostgreSQL, locks) a row only while the execution
    still has lease ``epoch``.

    Prepended to a batch with ``require=[0]``: it row-locks the execution (so it serialises
    with a claim on PostgreSQL) and rolls the whole batch back once another worker owns it.
    PostgreSQL takes the lock an UPDATE would (``FOR NO KEY UPDATE``) without writing a new
    row version of the execution per checkpoint; SQLite's writer holds the database's one
    write lock for the whole group, and there a no-op UPDATE is what gives a row count.
    """
    if epoch is None:
        return []
    if dialect == "postgresql":
        return [(_PG_FENCE, {"fence_e": execution_id, "fence_epoch": epoch})]
    return [("UPDATE executions SET lease_epoch = lease_epoch WHERE id = :e "
             "AND lease_epoch = :epoch", {"e": execution_id, "epoch": epoch})]


_PG_FENCE = ("SELECT 1 FROM executions WHERE id = :fence_e AND lease_epoch = :fence_epoch "
             "FOR NO KEY UPDATE")
_INSERT_VALUES = re.compile(r"INSERT INTO (\w+) \(([^()]*)\) VALUES \((.*)\)", re.S)


@lru_cache(maxsize=256)
def _behind_fence(sql: str) -> str | None:
    """``INSERT INTO t (cols) VALUES (vals)`` as one statement that inserts only while the
    fence holds (PostgreSQL): ``WITH fence AS (<the fence>) INSERT INTO t (cols) SELECT
    vals FROM fence``. It inserts its one row, or none once the lease moved on: the fence
    and the batch's first write in one round trip instead of two (one statement fewer per
    checkpoint). PostgreSQL types the parameters from the target columns, as for VALUES.
    None for any other statement (an upsert, an UPDATE): those keep the fence before them."""
    m = _INSERT_VALUES.fullmatch(sql)
    if m is None:
        return None
    return f"WITH fence AS ({_PG_FENCE}) INSERT INTO {m[1]} ({m[2]}) SELECT {m[3]} FROM fence"


async def fenced(driver: Driver, execution_id: str, epoch: int | None,
                 stmts: list[Statement], require: Sequence[int] = ()) -> list[int]:
    """Run ``stmts`` in one transaction behind the fence. A statement in ``require`` (an
    index into ``stmts``) that changes no row rolls everything back: ``NoRowsError`` with
    that index; the fence failing is ``StaleLeaseError`` instead."""
    if epoch is not None and driver.dialect == "postgresql" and stmts:
        merged = _behind_fence(stmts[0][0])
        if merged is not None:
            first = (merged, {**stmts[0][1], "fence_e": execution_id, "fence_epoch": epoch})
            try:  # index 0 changing no row can only be the fence: an INSERT inserts its row
                return await driver.batch([first, *stmts[1:]], require=sorted({0, *require}))
            except NoRowsError as err:
                if err.index == 0:
                    raise _stale(execution_id, epoch) from None
                raise
    fence = _fence(execution_id, epoch, driver.dialect)
    n = len(fence)
    try:
        counts = await driver.batch([*fence, *stmts],
                                    require=[*range(n), *(i + n for i in require)])
    except NoRowsError as err:
        if err.index < n:
            raise _stale(execution_id, epoch) from None
        raise NoRowsError(err.index - n) from None
    return counts[n:]


def _stale(execution_id: str, epoch: int | None) -> StaleLeaseError:
    return StaleLeaseError(f"execution {execution_id}: lease epoch {epoch} is no longer "
                           "current; another worker owns it")


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
