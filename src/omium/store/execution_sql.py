"""``ExecutionStore`` in SQL: workflows, executions, their history, and the API's detail."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

from omium.errors import ExecutionStateError, IdempotencyKeyReusedError
from omium.status import Status
from omium.store import _statements as sql
from omium.store._driver import ConflictError, Driver, NoRowsError, Statement, equals
from omium.store._rows import (
    CHECKPOINT,
    CONSENSUS,
    DETAIL_TOTALS,
    EVENT,
    EXECUTION,
    HANDOFF,
    USAGE,
    WORKFLOW,
    Shape,
    dump,
    load,
)
from omium.store._signal import QueueSignal
from omium.store.records import (
    CheckpointRecord,
    ConsensusRecord,
    DetailPart,
    DetailRow,
    EventRecord,
    ExecutionDetail,
    ExecutionRecord,
    HandoffRecord,
    UsageRecord,
    WorkflowRecord,
)


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def _same_request(stored: ExecutionRecord, new: ExecutionRecord) -> bool:
    """The same workflow (a content hash per tenant, so an equal inline definition is the
    same id) and equal inputs: JSON-equal, so key order does not matter but 1 vs true does."""
    return (stored.workflow_id == new.workflow_id
            and _canonical(stored.inputs) == _canonical(new.inputs))


# An execution's lists as the API reads them: part -> (table, shape), oldest first by id.
_PARTS: dict[str, tuple[str, Shape[Any]]] = {
    "checkpoints": ("checkpoints", CHECKPOINT),
    "handoffs": ("handoffs", HANDOFF),
    "consensus": ("consensus_results", CONSENSUS),
    "events": ("events", EVENT),
    "usage": ("usage_records", USAGE),
}
_LIST = {part: f"SELECT {shape.columns} FROM {table} WHERE execution_id = :e"
         for part, (table, shape) in _PARTS.items()}
_TOTALS = ("SELECT (SELECT COUNT(*) FROM checkpoints WHERE execution_id = :e) AS checkpoints, "
           "(SELECT COUNT(*) FROM handoffs WHERE execution_id = :e) AS handoffs, "
           "(SELECT COUNT(*) FROM consensus_results WHERE execution_id = :e) AS consensus, "
           "(SELECT COUNT(*) FROM events WHERE execution_id = :e) AS events, "
           "COUNT(*) AS usage, COALESCE(SUM(prompt_tokens), 0) AS prompt_tokens, "
           "COALESCE(SUM(completion_tokens), 0) AS completion_tokens, "
           "COALESCE(SUM(cached_tokens), 0) AS cached_tokens, "
           "COALESCE(SUM(cost_nano), 0) AS cost_nano FROM usage_records WHERE execution_id = :e")
_TENANTS_EXECUTION = "SELECT * FROM executions WHERE id = :e AND tenant_id = :t"

# Cancelling now and its event, in one transaction (see request_cancel).
_CANCEL_TRIES = 5
# A running execution whose lease expired (its process died) is cancelled at once too; the
# epoch moves on so that nothing its holder might still write can land.
_CANCEL_NOW = ("UPDATE executions SET status = 'cancelled', updated_at = :ts, "
               "finished_at = :ts, cancel_requested = 1, lease_epoch = lease_epoch + 1, "
               "lease_owner = NULL, lease_expires_at = NULL WHERE id = :e AND tenant_id = :t "
               "AND status = :old AND (status IN ('queued', 'failed', 'awaiting_review') "
               "OR (status = 'running' AND (lease_expires_at IS NULL "
               "OR lease_expires_at < :ts)))")
_CANCELLED_EVENT = ("INSERT INTO events (execution_id, ts, type, agent_id, data) "
                    "VALUES (:e, :ts, 'cancelled', NULL, :data)")
_FLAG_CANCEL = ("UPDATE executions SET cancel_requested = 1, updated_at = :ts WHERE id = :e "
                "AND tenant_id = :t AND status = 'running' AND lease_expires_at IS NOT NULL")


def _execution_filter(*, since: float | None = None, id_prefix: str | None = None,
                      **columns: str | None) -> tuple[str, dict[str, Any]]:
    """The WHERE of a list (or count) of executions: equal columns, created at or after
    ``since``, ids starting with ``id_prefix`` (compared as text: no LIKE wildcards)."""
    where, params = equals(**columns)
    if since is not None:
        where += " AND created_at >= :since"
        params["since"] = since
    if id_prefix:
        where += " AND substr(id, 1, length(:prefix)) = :prefix"
        params["prefix"] = id_prefix
    return where, params


class ExecutionSql:
    _driver: Driver
    _known_workflows: set[str]  # ids this process stored: skip the write
    _queue: QueueSignal

    # -- workflows
    async def put_workflow(self, name: str, definition: dict[str, Any],
                           tenant_id: str = "local") -> str:
        body = json.dumps(definition, sort_keys=True, separators=(",", ":"), default=str)
        digest = hashlib.sha256(body.encode()).hexdigest()
        scoped = hashlib.sha256(f"{tenant_id}\n{digest}".encode()).hexdigest()
        wf_id = f"{name}@{scoped[:12]}"  # per tenant: the same definition, separate ids
        if wf_id in self._known_workflows:
            return wf_id
        await self._driver.execute(
            "INSERT INTO workflows (id, name, digest, definition, created_at, tenant_id) "
            "VALUES (:id, :name, :digest, :body, :ts, :t) ON CONFLICT (id) DO NOTHING",
            {"id": wf_id, "name": name, "digest": digest, "body": body, "ts": time.time(),
             "t": tenant_id})
        self._known_workflows.add(wf_id)
        return wf_id

    async def get_workflow(self, workflow_id: str) -> dict[str, Any] | None:
        row = await self._driver.fetchone("SELECT definition FROM workflows WHERE id = :id",
                                          {"id": workflow_id})
        return None if row is None else load(row["definition"])

    async def get_workflow_record(self, workflow_id: str,
                                  tenant_id: str | None = None) -> WorkflowRecord | None:
        row = await self._driver.fetchone(
            f"SELECT {WORKFLOW.columns} FROM workflows WHERE id = :id", {"id": workflow_id})
        if row is None or (tenant_id is not None and row["tenant_id"] != tenant_id):
            return None
        return WORKFLOW.decode(row)

    async def list_workflows(self, tenant_id: str, *, limit: int = 50,
                             before: tuple[float, str] | None = None) -> list[WorkflowRecord]:
        params: dict[str, Any] = {"t": tenant_id, "limit": limit}
        where = "tenant_id = :t"
        if before is not None:
            where += " AND (created_at < :c OR (created_at = :c AND id < :i))"
            params.update(c=before[0], i=before[1])
        return WORKFLOW.decode_all(await self._driver.fetchall(
            f"SELECT {WORKFLOW.columns} FROM workflows "
            f"WHERE {where} ORDER BY created_at DESC, id DESC LIMIT :limit", params))

    # -- executions
    async def create_execution(self, rec: ExecutionRecord) -> tuple[ExecutionRecord, bool]:
        now = time.time()
        created = await self._driver.execute(
            "INSERT INTO executions (id, workflow_id, workflow_name, definition, inputs, status, "
            "tenant_id, created_at, updated_at, idempotency_key, lease_owner, lease_expires_at, "
            "lease_epoch) VALUES (:id, :wf, :name, :defn, :inputs, :status, :tenant, :ts, :ts, "
            ":key, :owner, :expires, :epoch) ON CONFLICT DO NOTHING",
            {"id": rec.id, "wf": rec.workflow_id, "name": rec.workflow_name,
             "defn": dump(rec.definition), "inputs": dump(rec.inputs), "status": rec.status,
             "tenant": rec.tenant_id, "ts": now, "key": rec.idempotency_key,
             "owner": rec.lease_owner, "expires": rec.lease_expires_at,
             "epoch": rec.lease_epoch})
        if created:  # what we wrote is what is stored: save the read
            rec.created_at = rec.updated_at = now
            if rec.status == Status.QUEUED:
                self._queue.queued()
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
        row = await self._driver.fetchone("SELECT * FROM executions WHERE id = :id",
                                          {"id": execution_id})
        return None if row is None else EXECUTION.decode(row)

    async def list_executions(self, *, status: str | None = None, tenant_id: str | None = None,
                              limit: int = 50, workflow_id: str | None = None,
                              before: tuple[float, str] | None = None,
                              workflow_name: str | None = None, since: float | None = None,
                              id_prefix: str | None = None) -> list[ExecutionRecord]:
        where, params = _execution_filter(status=status, tenant_id=tenant_id,
                                          workflow_id=workflow_id, workflow_name=workflow_name,
                                          since=since, id_prefix=id_prefix)
        params["limit"] = limit
        if before is not None:  # keyset pagination: strictly after the last row seen
            where += " AND (created_at < :c OR (created_at = :c AND id < :i))"
            params.update(c=before[0], i=before[1])
        return EXECUTION.decode_all(await self._driver.fetchall(
            f"SELECT * FROM executions WHERE {where} "
            "ORDER BY created_at DESC, id DESC LIMIT :limit", params))

    async def count_executions(self, *, tenant_id: str | None = None,
                               workflow_id: str | None = None,
                               workflow_name: str | None = None, since: float | None = None,
                               id_prefix: str | None = None) -> dict[str, int]:
        where, params = _execution_filter(tenant_id=tenant_id, workflow_id=workflow_id,
                                          workflow_name=workflow_name, since=since,
                                          id_prefix=id_prefix)
        rows = await self._driver.fetchall(
            f"SELECT status, COUNT(*) AS n FROM executions WHERE {where} GROUP BY status",
            params)
        return {row["status"]: int(row["n"]) for row in rows}

    async def find_by_idempotency_key(self, tenant_id: str, key: str) -> str | None:
        row = await self._driver.fetchone(
            "SELECT id FROM executions WHERE tenant_id = :t AND idempotency_key = :k",
            {"t": tenant_id, "k": key})
        return None if row is None else row["id"]

    async def update_execution(self, execution_id: str, *, status: str,
                               expect_status: Sequence[str] | None = None,
                               events: Sequence[EventRecord] = (), epoch: int | None = None,
                               **fields: Any) -> bool:
        stmts = [sql.update_execution(execution_id, status, expect_status, fields),
                 *(sql.event(e) for e in events)]
        try:
            # The events describe this change: they commit with it or not at all.
            await sql.fenced(self._driver, execution_id, epoch, stmts, require=[0])
        except NoRowsError:
            return False
        if status == Status.QUEUED:
            self._queue.queued()
        return True

    async def apply_review(self, execution_id: str, decision: str, *, status: str,
                           events: Sequence[EventRecord] = (),
                           vote: CheckpointRecord | None = None, **fields: Any) -> bool:
        # The execution's row first: it row-locks the execution (concurrent reviews and a
        # cancel wait, then find it no longer awaiting review), as every fenced write does.
        stmts = [sql.update_execution(execution_id, status, [Status.AWAITING_REVIEW], fields)]
        if vote is not None:
            stmts += [sql.review_vote(execution_id, vote.agent_id, decision),
                      sql.checkpoint(vote, None)]
        stmts += [sql.event(e) for e in events]
        try:
            await self._driver.batch(stmts, require=[0, 1] if vote is not None else [0])
        except (NoRowsError, ConflictError):  # not awaiting review, or reviewed already
            return False
        if status == Status.QUEUED:
            self._queue.queued()
        return True

    async def request_cancel(self, execution_id: str, tenant_id: str) -> str | None:
        """Cancel: queued/failed/awaiting-review executions (and running ones whose lease has
        expired) at once, with a ``cancelled`` event in the same transaction; a run under a
        live lease (a worker's, a CLI run's) is flagged and its holder stops it (and records
        the event) at its next lease renewal. Returns "cancelled",
        "cancelling", or None if it is not this tenant's; an ended one is an
        ``ExecutionStateError``."""
        p: dict[str, Any] = {"e": execution_id, "t": tenant_id}
        # Change only from the status just read: the event then says what was cancelled, and
        # a status that moved in between (a claim, a release, a review) is read again.
        for _ in range(_CANCEL_TRIES):
            row = await self._driver.fetchone(
                "SELECT status, lease_expires_at FROM executions WHERE id = :e "
                "AND tenant_id = :t", p)
            if row is None:
                return None
            status = row["status"]
            if status in (Status.COMPLETED, Status.CANCELLED):
                raise ExecutionStateError(f"execution {execution_id} is {status} already")
            params = {**p, "ts": time.time(), "old": status,
                      "data": dump({"from_status": status})}
            expires = row["lease_expires_at"]
            if status == Status.RUNNING and expires is not None and expires >= params["ts"]:
                if await self._driver.execute(_FLAG_CANCEL, params):
                    return Status.CANCELLING
                continue
            try:
                await self._driver.batch(
                    [(_CANCEL_NOW, params), (_CANCELLED_EVENT, params)], require=[0])
                return Status.CANCELLED
            except NoRowsError:
                continue
        raise ExecutionStateError(f"execution {execution_id} kept changing while cancelling; "
                                  "try again")

    # -- checkpoints
    async def save_checkpoint(self, cp: CheckpointRecord,
                              handoffs: Sequence[HandoffRecord] = (),
                              events: Sequence[EventRecord] = (),
                              consensus: ConsensusRecord | None = None,
                              epoch: int | None = None,
                              finish: Mapping[str, Any] | None = None) -> bool:
        stmts = [sql.checkpoint(cp, epoch)]
        stmts += [sql.handoff(h) for h in handoffs]
        stmts += [sql.event(e) for e in events]
        if consensus is not None:
            stmts.append(sql.consensus(consensus))
        require = []
        if finish is not None:  # the run's last write: its final status commits with it
            fields = dict(finish)
            status = fields.pop("status")
            require.append(len(stmts))
            stmts.append(sql.update_execution(cp.execution_id, status, [Status.RUNNING], fields))
        try:
            await sql.fenced(self._driver, cp.execution_id, epoch, stmts, require=require)
        except ConflictError:
            return False  # a live checkpoint exists: another run finished this agent first
        except NoRowsError:
            raise ExecutionStateError(f"execution {cp.execution_id} is no longer running"
                                      ) from None
        return True

    async def get_checkpoints(self, execution_id: str, *,
                              include_superseded: bool = False) -> list[CheckpointRecord]:
        return CHECKPOINT.decode_all(await self._driver.fetchall(
            f"{_LIST['checkpoints']} AND (:incl = 1 OR superseded = 0) ORDER BY id",
            {"e": execution_id, "incl": int(include_superseded)}))

    async def supersede_checkpoints(self, execution_id: str, agent_ids: Sequence[str],
                                    events: Sequence[EventRecord] = (),
                                    epoch: int | None = None) -> int:
        stmts: list[Statement] = [
            ("UPDATE checkpoints SET superseded = 1 WHERE execution_id = :e "
             "AND agent_id = :a AND superseded = 0", {"e": execution_id, "a": a})
            for a in agent_ids]
        stmts += [sql.event(e) for e in events]
        counts = await sql.fenced(self._driver, execution_id, epoch, stmts)
        return sum(counts[: len(agent_ids)])

    # -- handoffs and events
    async def add_handoffs(self, records: Sequence[HandoffRecord],
                           epoch: int | None = None) -> None:
        if records:
            await sql.fenced(self._driver, records[0].execution_id, epoch,
                             [sql.handoff(h) for h in records])

    async def get_handoffs(self, execution_id: str) -> list[HandoffRecord]:
        return HANDOFF.decode_all(await self._driver.fetchall(
            f"{_LIST['handoffs']} ORDER BY id", {"e": execution_id}))

    async def add_events(self, events: Sequence[EventRecord], epoch: int | None = None) -> None:
        if events:
            await sql.fenced(self._driver, events[0].execution_id, epoch,
                             [sql.event(e) for e in events])

    async def get_events(self, execution_id: str) -> list[EventRecord]:
        return EVENT.decode_all(await self._driver.fetchall(
            f"{_LIST['events']} ORDER BY id", {"e": execution_id}))

    # -- consensus
    async def save_consensus(self, rec: ConsensusRecord, events: Sequence[EventRecord] = (),
                             epoch: int | None = None) -> None:
        stmts = [sql.consensus(rec), *(sql.event(e) for e in events)]
        await sql.fenced(self._driver, rec.execution_id, epoch, stmts)

    async def get_consensus(self, execution_id: str) -> list[ConsensusRecord]:
        return CONSENSUS.decode_all(await self._driver.fetchall(
            f"{_LIST['consensus']} ORDER BY id", {"e": execution_id}))

    async def review_consensus(self, execution_id: str, node_id: str, decision: str) -> bool:
        text, params = sql.review_vote(execution_id, node_id, decision)
        return await self._driver.execute(text, params) == 1

    # -- usage (BillingSql writes it)
    async def usage_records(self, *, tenant_id: str | None = None,
                            execution_id: str | None = None) -> list[UsageRecord]:
        where, params = equals(tenant_id=tenant_id, execution_id=execution_id)
        return USAGE.decode_all(await self._driver.fetchall(
            f"SELECT {USAGE.columns} FROM usage_records WHERE {where} ORDER BY id", params))

    # -- what the API reads of one execution
    async def execution_detail(self, execution_id: str, tenant_id: str, *,
                               limit: int | None = None) -> ExecutionDetail | None:
        """The execution and everything about it, in one round trip; None if it is not this
        tenant's (another tenant's execution does not exist, as far as callers can tell).
        With ``limit``, each list holds its first ``limit`` rows and ``totals`` counts every
        row of each and sums the usage, so the answer stays small."""
        p: dict[str, Any] = {"e": execution_id, "t": tenant_id}
        by = " ORDER BY id"
        if limit is not None:
            by += " LIMIT :n"
            p["n"] = limit
        queries = [(_TENANTS_EXECUTION, p), *((q + by, p) for q in _LIST.values())]
        if limit is not None:
            queries.append((_TOTALS, p))
        found, *lists = await self._driver.fetch_many(queries)
        if not found:
            return None
        parts = {part: shape.decode_all(rows) for (part, (_, shape)), rows
                 in zip(_PARTS.items(), lists[:len(_PARTS)], strict=True)}
        totals = DETAIL_TOTALS.decode(lists[-1][0]) if limit is not None else None
        return ExecutionDetail(EXECUTION.decode(found[0]), totals=totals, **parts)

    async def execution_rows(self, execution_id: str, tenant_id: str, part: DetailPart, *,
                             after: int = 0, limit: int = 100) -> list[DetailRow] | None:
        """One page of one of an execution's lists, oldest first: the records whose ``id``
        is above ``after``. None if the execution is not this tenant's."""
        p = {"e": execution_id, "t": tenant_id, "after": after, "n": limit}
        found, rows = await self._driver.fetch_many([
            ("SELECT id FROM executions WHERE id = :e AND tenant_id = :t", p),
            (f"{_LIST[part]} AND id > :after ORDER BY id LIMIT :n", p)])
        return _PARTS[part][1].decode_all(rows) if found else None
