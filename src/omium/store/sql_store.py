"""``Store`` over a ``Driver``: the same SQL serves SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from omium.errors import IdempotencyKeyReusedError, StaleLeaseError
from omium.store._driver import ConflictError, Driver, NoRowsError, Statement, equals
from omium.store.base import Store
from omium.store.billing_sql import BillingSql
from omium.store.migrate import ensure_migrated
from omium.store.records import (
    AWAITING_REVIEW,
    CheckpointRecord,
    ConsensusRecord,
    EventRecord,
    ExecutionRecord,
)
from omium.store.service_sql import ServiceSql

if TYPE_CHECKING:
    from omium.coordination.handoff import HandoffRecord


def _dump(value: Any) -> str:
    # allow_nan=False: NaN/Infinity written as text would be read back as nothing valid.
    # What enters is checked earlier (omium.jsonsafe); this is the last line, a ValueError.
    return json.dumps(value, separators=(",", ":"), default=str, allow_nan=False)


def _load(text: str | None) -> Any:
    return None if text is None else json.loads(text)


_EXEC_JSON = ("definition", "inputs", "decision", "result")
_EXEC_FIELDS = ("decision", "result", "error", "failed_agent", "failure_type", "finished_at",
                "lease_owner", "lease_expires_at", "cancel_requested", "recoveries")


def _execution(row: dict[str, Any]) -> ExecutionRecord:
    for key in _EXEC_JSON:
        row[key] = _load(row[key])
    row["cancel_requested"] = bool(row.get("cancel_requested"))
    return ExecutionRecord(**row)


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def _same_request(stored: ExecutionRecord, new: ExecutionRecord) -> bool:
    """The same workflow (a content hash per tenant, so an equal inline definition is the
    same id) and equal inputs: JSON-equal, so key order does not matter but 1 vs true does."""
    return (stored.workflow_id == new.workflow_id
            and _canonical(stored.inputs) == _canonical(new.inputs))


def _fence(execution_id: str, epoch: int | None) -> list[Statement]:
    """A statement that changes a row only while the execution still has lease ``epoch``.

    Prepended to a batch with ``require=[0]``: it row-locks the execution (so it serialises
    with a claim on PostgreSQL) and rolls the whole batch back once another worker owns it.
    """
    if epoch is None:
        return []
    return [("UPDATE executions SET lease_epoch = lease_epoch WHERE id = :e "
             "AND lease_epoch = :epoch", {"e": execution_id, "epoch": epoch})]


async def _fenced(driver: Driver, execution_id: str, epoch: int | None,
                  stmts: list[Statement], require: Sequence[int] = ()) -> list[int]:
    """Run ``stmts`` in one transaction behind the fence. A statement in ``require`` (an
    index into ``stmts``) that changes no row rolls everything back: ``NoRowsError`` with
    that index; the fence failing is ``StaleLeaseError`` instead."""
    fence = _fence(execution_id, epoch)
    n = len(fence)
    try:
        counts = await driver.batch([*fence, *stmts],
                                    require=[*range(n), *(i + n for i in require)])
    except NoRowsError as err:
        if err.index < n:
            raise StaleLeaseError(f"execution {execution_id}: lease epoch {epoch} is no "
                                  "longer current; another worker owns it") from None
        raise NoRowsError(err.index - n) from None
    return counts[n:]


def _event_stmt(ev: EventRecord) -> Statement:
    return ("INSERT INTO events (execution_id, ts, type, agent_id, data) "
            "VALUES (:e, :ts, :type, :agent, :data)",
            {"e": ev.execution_id, "ts": ev.ts or time.time(), "type": ev.type,
             "agent": ev.agent_id, "data": _dump(ev.data)})


def _handoff_stmt(h: HandoffRecord) -> Statement:
    return ("INSERT INTO handoffs (execution_id, from_agent, to_agents, status, acks, reason, "
            "error, latency_ms, created_at) VALUES (:e, :frm, :to, :status, :acks, :reason, "
            ":error, :lat, :ts)",
            {"e": h.execution_id, "frm": h.from_agent, "to": _dump(h.to_agents),
             "status": h.status, "acks": _dump(h.acks), "reason": h.reason, "error": h.error,
             "lat": h.latency_ms, "ts": h.created_at})


def _checkpoint_stmt(cp: CheckpointRecord, epoch: int | None) -> Statement:
    return ("INSERT INTO checkpoints (execution_id, agent_id, agent_index, attempt, output, "
            "served_by, superseded, started_at, finished_at, created_at, lease_epoch) VALUES "
            "(:e, :agent, :idx, :attempt, :output, :served_by, 0, :started, :finished, :ts, "
            ":epoch)",
            {"e": cp.execution_id, "agent": cp.agent_id, "idx": cp.agent_index,
             "attempt": cp.attempt, "output": _dump(cp.output), "served_by": cp.served_by,
             "started": cp.started_at, "finished": cp.finished_at, "ts": time.time(),
             "epoch": epoch or 0})


def _review_vote_stmt(execution_id: str, node_id: str, decision: str) -> Statement:
    """Record a human decision on the node's latest vote awaiting review (if it still is)."""
    return ("UPDATE consensus_results SET reviewed_decision = :d, reviewed_at = :ts "
            "WHERE id = (SELECT MAX(id) FROM consensus_results WHERE execution_id = :e "
            "AND node_id = :node AND outcome = 'manual_review') AND reviewed_decision IS NULL",
            {"d": decision, "ts": time.time(), "e": execution_id, "node": node_id})


def _update_stmt(execution_id: str, status: str, expect_status: Sequence[str] | None,
                 fields: dict[str, Any]) -> Statement:
    unknown = set(fields) - set(_EXEC_FIELDS)
    if unknown:
        raise TypeError(f"unknown execution fields {sorted(unknown)}")
    params: dict[str, Any] = {"id": execution_id, "status": status, "ts": time.time()}
    sets = ["status = :status", "updated_at = :ts"]
    for key, value in fields.items():
        sets.append(f"{key} = :{key}")  # keys come from _EXEC_FIELDS, never from users
        params[key] = _dump(value) if key in _EXEC_JSON else value
    where = "id = :id"
    if expect_status is not None:
        names = [f"s{i}" for i in range(len(expect_status))]
        where += f" AND status IN ({', '.join(':' + n for n in names)})"
        params.update(zip(names, expect_status, strict=True))
    return f"UPDATE executions SET {', '.join(sets)} WHERE {where}", params


def _consensus_stmt(rec: ConsensusRecord) -> Statement:
    return ("INSERT INTO consensus_results (execution_id, node_id, result, outcome, decision, "
            "agreement_level, created_at) VALUES (:e, :node, :result, :outcome, :decision, "
            ":level, :ts)",
            {"e": rec.execution_id, "node": rec.node_id, "result": _dump(rec.result),
             "outcome": rec.outcome, "decision": _dump(rec.decision),
             "level": rec.agreement_level, "ts": rec.created_at or time.time()})


class SqlStore(BillingSql, ServiceSql, Store):
    def __init__(self, url: str, driver: Driver, migration_url: str) -> None:
        self.url = url
        self.driver = driver
        self._migration_url = migration_url
        self._connected = False
        self._known_workflows: set[str] = set()  # ids this process stored: skip the write

    async def connect(self) -> None:
        if self._connected:
            return
        await self.driver.open()
        await ensure_migrated(self.driver, self._migration_url)
        self._connected = True

    async def close(self) -> None:
        await self.driver.close()
        self._connected = False

    # -- workflows
    async def put_workflow(self, name: str, definition: dict[str, Any],
                           tenant_id: str = "local") -> str:
        body = json.dumps(definition, sort_keys=True, separators=(",", ":"), default=str)
        digest = hashlib.sha256(body.encode()).hexdigest()
        scoped = hashlib.sha256(f"{tenant_id}\n{digest}".encode()).hexdigest()
        wf_id = f"{name}@{scoped[:12]}"  # per tenant: the same definition, separate ids
        if wf_id in self._known_workflows:
            return wf_id
        await self.driver.execute(
            "INSERT INTO workflows (id, name, digest, definition, created_at, tenant_id) "
            "VALUES (:id, :name, :digest, :body, :ts, :t) ON CONFLICT (id) DO NOTHING",
            {"id": wf_id, "name": name, "digest": digest, "body": body, "ts": time.time(),
             "t": tenant_id})
        self._known_workflows.add(wf_id)
        return wf_id

    async def get_workflow(self, workflow_id: str) -> dict[str, Any] | None:
        row = await self.driver.fetchone("SELECT definition FROM workflows WHERE id = :id",
                                         {"id": workflow_id})
        return None if row is None else _load(row["definition"])

    # -- executions
    async def create_execution(self, rec: ExecutionRecord) -> tuple[ExecutionRecord, bool]:
        now = time.time()
        created = await self.driver.execute(
            "INSERT INTO executions (id, workflow_id, workflow_name, definition, inputs, status, "
            "tenant_id, created_at, updated_at, idempotency_key) VALUES (:id, :wf, :name, "
            ":defn, :inputs, :status, :tenant, :ts, :ts, :key) ON CONFLICT DO NOTHING",
            {"id": rec.id, "wf": rec.workflow_id, "name": rec.workflow_name,
             "defn": _dump(rec.definition), "inputs": _dump(rec.inputs), "status": rec.status,
             "tenant": rec.tenant_id, "ts": now, "key": rec.idempotency_key})
        if created:  # what we wrote is what is stored: save the read
            rec.created_at = rec.updated_at = now
            return rec, True
        existing_id = rec.id
        if rec.idempotency_key is not None:  # the same key returns the same execution
            existing_id = await self.find_by_idempotency_key(rec.tenant_id,
                                                             rec.idempotency_key) or rec.id
        stored = await self.get_execution(existing_id)
        assert stored is not None
        if rec.idempotency_key is not None and not _same_request(stored, rec):
            raise IdempotencyKeyReusedError(rec.idempotency_key, stored.id)
        return stored, False

    async def get_execution(self, execution_id: str) -> ExecutionRecord | None:
        row = await self.driver.fetchone("SELECT * FROM executions WHERE id = :id",
                                         {"id": execution_id})
        return None if row is None else _execution(row)

    async def list_executions(self, *, status: str | None = None, tenant_id: str | None = None,
                              limit: int = 50, workflow_id: str | None = None,
                              before: tuple[float, str] | None = None) -> list[ExecutionRecord]:
        where, params = equals(status=status, tenant_id=tenant_id, workflow_id=workflow_id)
        params["limit"] = limit
        if before is not None:  # keyset pagination: strictly after the last row seen
            where += " AND (created_at < :c OR (created_at = :c AND id < :i))"
            params.update(c=before[0], i=before[1])
        rows = await self.driver.fetchall(
            f"SELECT * FROM executions WHERE {where} "
            "ORDER BY created_at DESC, id DESC LIMIT :limit", params)
        return [_execution(r) for r in rows]

    async def update_execution(self, execution_id: str, *, status: str,
                               expect_status: Sequence[str] | None = None,
                               events: Sequence[EventRecord] = (), epoch: int | None = None,
                               **fields: Any) -> bool:
        stmts = [_update_stmt(execution_id, status, expect_status, fields),
                 *(_event_stmt(e) for e in events)]
        try:
            # The events describe this change: they commit with it or not at all.
            await _fenced(self.driver, execution_id, epoch, stmts, require=[0])
        except NoRowsError:
            return False
        return True

    async def apply_review(self, execution_id: str, decision: str, *, status: str,
                           events: Sequence[EventRecord] = (),
                           vote: CheckpointRecord | None = None, **fields: Any) -> bool:
        # The execution's row first: it row-locks the execution (concurrent reviews and a
        # cancel wait, then find it no longer awaiting review), as every fenced write does.
        stmts = [_update_stmt(execution_id, status, [AWAITING_REVIEW], fields)]
        if vote is not None:
            stmts += [_review_vote_stmt(execution_id, vote.agent_id, decision),
                      _checkpoint_stmt(vote, None)]
        stmts += [_event_stmt(e) for e in events]
        try:
            await self.driver.batch(stmts, require=[0, 1] if vote is not None else [0])
        except (NoRowsError, ConflictError):  # not awaiting review, or reviewed already
            return False
        return True

    # -- checkpoints
    async def save_checkpoint(self, cp: CheckpointRecord,
                              handoffs: Sequence[HandoffRecord] = (),
                              events: Sequence[EventRecord] = (),
                              consensus: ConsensusRecord | None = None,
                              epoch: int | None = None) -> bool:
        stmts = [_checkpoint_stmt(cp, epoch)]
        stmts += [_handoff_stmt(h) for h in handoffs]
        stmts += [_event_stmt(e) for e in events]
        if consensus is not None:
            stmts.append(_consensus_stmt(consensus))
        try:
            await _fenced(self.driver, cp.execution_id, epoch, stmts)
        except ConflictError:
            return False  # a live checkpoint exists: another run finished this agent first
        return True

    async def get_checkpoints(self, execution_id: str, *,
                              include_superseded: bool = False) -> list[CheckpointRecord]:
        rows = await self.driver.fetchall(
            "SELECT id, execution_id, agent_id, agent_index, attempt, output, served_by, "
            "superseded, started_at, finished_at, lease_epoch FROM checkpoints "
            "WHERE execution_id = :e "
            "AND (:incl = 1 OR superseded = 0) ORDER BY id",
            {"e": execution_id, "incl": int(include_superseded)})
        out = []
        for r in rows:
            r["output"] = _load(r["output"])
            r["superseded"] = bool(r["superseded"])
            out.append(CheckpointRecord(**r))
        return out

    async def supersede_checkpoints(self, execution_id: str, agent_ids: Sequence[str],
                                    events: Sequence[EventRecord] = (),
                                    epoch: int | None = None) -> int:
        stmts: list[Statement] = [
            ("UPDATE checkpoints SET superseded = 1 WHERE execution_id = :e "
             "AND agent_id = :a AND superseded = 0", {"e": execution_id, "a": a})
            for a in agent_ids]
        stmts += [_event_stmt(e) for e in events]
        counts = await _fenced(self.driver, execution_id, epoch, stmts)
        return sum(counts[: len(agent_ids)])

    # -- handoffs and events
    async def add_handoffs(self, records: Sequence[HandoffRecord],
                           epoch: int | None = None) -> None:
        if records:
            await _fenced(self.driver, records[0].execution_id, epoch,
                          [_handoff_stmt(h) for h in records])

    async def get_handoffs(self, execution_id: str) -> list[dict[str, Any]]:
        rows = await self.driver.fetchall(
            "SELECT id, from_agent, to_agents, status, acks, reason, error, latency_ms, "
            "created_at FROM handoffs WHERE execution_id = :e ORDER BY id", {"e": execution_id})
        for r in rows:
            r["to_agents"], r["acks"] = _load(r["to_agents"]), _load(r["acks"])
        return rows

    async def add_events(self, events: Sequence[EventRecord], epoch: int | None = None) -> None:
        if events:
            await _fenced(self.driver, events[0].execution_id, epoch,
                          [_event_stmt(e) for e in events])

    async def get_events(self, execution_id: str) -> list[EventRecord]:
        rows = await self.driver.fetchall(
            "SELECT id, execution_id, ts, type, agent_id, data FROM events "
            "WHERE execution_id = :e ORDER BY id", {"e": execution_id})
        return [EventRecord(r["execution_id"], r["type"], r["agent_id"], _load(r["data"]),
                            r["ts"], r["id"]) for r in rows]

    # -- consensus
    async def save_consensus(self, rec: ConsensusRecord, events: Sequence[EventRecord] = (),
                             epoch: int | None = None) -> None:
        stmts = [_consensus_stmt(rec), *(_event_stmt(e) for e in events)]
        await _fenced(self.driver, rec.execution_id, epoch, stmts)

    async def get_consensus(self, execution_id: str) -> list[ConsensusRecord]:
        rows = await self.driver.fetchall(
            "SELECT execution_id, node_id, result, outcome, decision, agreement_level, "
            "created_at, reviewed_decision, reviewed_at FROM consensus_results "
            "WHERE execution_id = :e ORDER BY id", {"e": execution_id})
        for r in rows:
            r["result"], r["decision"] = _load(r["result"]), _load(r["decision"])
        return [ConsensusRecord(**r) for r in rows]

    async def review_consensus(self, execution_id: str, node_id: str, decision: str) -> bool:
        sql, params = _review_vote_stmt(execution_id, node_id, decision)
        return await self.driver.execute(sql, params) == 1
