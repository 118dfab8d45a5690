"""``GraphCheckpointStore`` in SQL: LangGraph checkpoints and their pending writes.

Blobs go in and come out as bytes (the saver serialises them); metadata is JSON text. A
metadata filter is applied here, in Python, to decoded documents: exact equality of any
JSON value on both backends, which neither dialect's JSON operators give alike.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from omium.store import _statements as sql
from omium.store._driver import Driver, Statement
from omium.store._rows import dump, load
from omium.store.records import GraphCheckpoint, GraphWrite, GraphWrites

_CHECKPOINT_COLS = ("thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, type, "
                    "checkpoint, metadata, execution_id, created_at")
_WRITES = ("SELECT task_id, idx, channel, type, value, task_path FROM graph_writes "
           "WHERE thread_id = :t AND checkpoint_ns = :ns AND checkpoint_id = :id")
_PUT = (f"INSERT INTO graph_checkpoints ({_CHECKPOINT_COLS}) VALUES (:thread_id, :checkpoint_ns, "
        ":checkpoint_id, :parent_checkpoint_id, :type, :checkpoint, :metadata, :execution_id, "
        ":created_at) ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id) DO UPDATE SET "
        "parent_checkpoint_id = excluded.parent_checkpoint_id, type = excluded.type, "
        "checkpoint = excluded.checkpoint, metadata = excluded.metadata")
_PUT_WRITE = ("INSERT INTO graph_writes (thread_id, checkpoint_ns, checkpoint_id, task_id, idx, "
              "task_path, channel, type, value) VALUES (:t, :ns, :id, :task_id, :idx, "
              ":task_path, :channel, :type, :value) "
              "ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id, task_id, idx) ")
# A task's regular writes are final once stored (a retried put_writes keeps the first); an
# error, interrupt or resume write (negative idx) is replaced by the newer one.
_KEEP = _PUT_WRITE + "DO NOTHING"
_REPLACE = _PUT_WRITE + ("DO UPDATE SET task_path = excluded.task_path, "
                         "channel = excluded.channel, type = excluded.type, "
                         "value = excluded.value")
_PAGE = 200  # rows read at a time while a metadata filter discards some


def _checkpoint(row: dict[str, Any]) -> GraphCheckpoint:
    row["checkpoint"] = bytes(row["checkpoint"])
    row["metadata"] = load(row["metadata"])
    return GraphCheckpoint(**row)


def _matches(metadata: Mapping[str, Any], wanted: Mapping[str, Any] | None) -> bool:
    # As LangGraph's own savers filter: a key asked to be None matches a missing key too.
    return not wanted or all(metadata.get(k) == v for k, v in wanted.items())


class GraphSql:
    _driver: Driver

    async def put_graph_checkpoint(self, cp: GraphCheckpoint, *, epoch: int | None = None,
                                   writes: Sequence[GraphWrites] = (),
                                   earlier: Sequence[GraphCheckpoint] = ()) -> None:
        stmts = [s for w in writes for s in _write_statements(
            w.thread_id, w.checkpoint_ns, w.checkpoint_id, w.writes)]
        puts = [(_PUT, _checkpoint_params(c)) for c in (*earlier, cp)]
        await self._fenced(cp.execution_id, epoch, [*stmts, *puts])

    async def put_graph_writes(self, thread_id: str, checkpoint_ns: str, checkpoint_id: str,
                               writes: Sequence[GraphWrite], *, execution_id: str | None = None,
                               epoch: int | None = None) -> None:
        if not writes:
            return
        await self._fenced(execution_id, epoch,
                           _write_statements(thread_id, checkpoint_ns, checkpoint_id, writes))

    async def _fenced(self, execution_id: str | None, epoch: int | None,
                      stmts: list[Statement]) -> None:
        if epoch is not None:
            if execution_id is None:
                raise ValueError("a fenced graph write needs the execution it belongs to")
            await sql.fenced(self._driver, execution_id, epoch, stmts)
        else:
            await self._driver.batch(stmts)

    async def get_graph_checkpoint(self, thread_id: str, checkpoint_ns: str,
                                   checkpoint_id: str | None = None
                                   ) -> GraphCheckpoint | None:
        found = await self.list_graph_checkpoints(thread_id=thread_id,
                                                  checkpoint_ns=checkpoint_ns,
                                                  checkpoint_id=checkpoint_id, limit=1)
        return found[0] if found else None

    async def list_graph_checkpoints(self, *, thread_id: str | None = None,
                                     checkpoint_ns: str | None = None,
                                     checkpoint_id: str | None = None,
                                     before: str | None = None,
                                     metadata: Mapping[str, Any] | None = None,
                                     limit: int | None = None) -> list[GraphCheckpoint]:
        if limit is not None and limit <= 0:
            return []
        where, params = _where(thread_id, checkpoint_ns, checkpoint_id)
        if before is not None:
            where += " AND checkpoint_id < :before"
            params["before"] = before
        found: list[GraphCheckpoint] = []
        cursor: dict[str, Any] = {}
        while True:  # pages by keyset until the limit is met (a filter may drop rows)
            page = _PAGE if metadata or limit is None else limit
            after = (" AND (checkpoint_id, thread_id, checkpoint_ns) < (:c_id, :c_t, :c_ns)"
                     if cursor else "")
            rows = await self._driver.fetchall(
                f"SELECT {_CHECKPOINT_COLS} FROM graph_checkpoints WHERE {where}{after} "
                "ORDER BY checkpoint_id DESC, thread_id DESC, checkpoint_ns DESC "
                f"LIMIT {int(page)}", {**params, **cursor})
            if rows:
                last = rows[-1]
                cursor = {"c_id": last["checkpoint_id"], "c_t": last["thread_id"],
                          "c_ns": last["checkpoint_ns"]}
            found += [cp for cp in map(_checkpoint, rows) if _matches(cp.metadata, metadata)]
            if len(rows) < page or (limit is not None and len(found) >= limit):
                break
        found = found[:limit] if limit is not None else found
        await self._with_writes(found)
        return found

    async def _with_writes(self, checkpoints: list[GraphCheckpoint]) -> None:
        if not checkpoints:
            return
        pages = await self._driver.fetch_many([
            (_WRITES, {"t": c.thread_id, "ns": c.checkpoint_ns, "id": c.checkpoint_id})
            for c in checkpoints])
        for cp, rows in zip(checkpoints, pages, strict=True):
            writes = [GraphWrite(r["task_id"], int(r["idx"]), r["channel"], r["type"],
                                 bytes(r["value"]), r["task_path"]) for r in rows]
            # The order LangGraph applies a super-step's writes in (writes_sort_key), sorted
            # here: a database collation must not reorder task paths.
            cp.writes = sorted(writes, key=lambda w: (w.task_path, w.task_id, w.idx))

    async def delete_graph_thread(self, thread_id: str) -> None:
        await self._driver.batch([
            ("DELETE FROM graph_writes WHERE thread_id = :t", {"t": thread_id}),
            ("DELETE FROM graph_checkpoints WHERE thread_id = :t", {"t": thread_id})])


def _checkpoint_params(cp: GraphCheckpoint) -> dict[str, Any]:
    return {"thread_id": cp.thread_id, "checkpoint_ns": cp.checkpoint_ns,
            "checkpoint_id": cp.checkpoint_id, "parent_checkpoint_id": cp.parent_checkpoint_id,
            "type": cp.type, "checkpoint": cp.checkpoint, "metadata": dump(cp.metadata),
            "execution_id": cp.execution_id, "created_at": cp.created_at or time.time()}


def _write_statements(thread_id: str, checkpoint_ns: str, checkpoint_id: str,
                      writes: Sequence[GraphWrite]) -> list[Statement]:
    key = {"t": thread_id, "ns": checkpoint_ns, "id": checkpoint_id}
    return [(_REPLACE if w.idx < 0 else _KEEP,
             {**key, "task_id": w.task_id, "idx": w.idx, "task_path": w.task_path,
              "channel": w.channel, "type": w.type, "value": w.value}) for w in writes]


def _where(thread_id: str | None, checkpoint_ns: str | None,
           checkpoint_id: str | None) -> tuple[str, dict[str, Any]]:
    clauses, params = ["1 = 1"], {}
    for column, value in (("thread_id", thread_id), ("checkpoint_ns", checkpoint_ns),
                          ("checkpoint_id", checkpoint_id)):
        if value is not None:
            clauses.append(f"{column} = :{column}")
            params[column] = value
    return " AND ".join(clauses), params
