"""PostgreSQL driver on an asyncpg pool; ``:name`` parameters become ``$n``.

Group commit, as on SQLite: write batches (``batch``) that arrive while another group is being
written wait, and the next group runs them all, in order, in ONE transaction (up to
``GROUP_MAX``), so many executions' checkpoints share one COMMIT (the bench counts under one
PostgreSQL transaction per agent step). Callers are resolved after that COMMIT. No savepoints
(a subtransaction per call costs what it saves): if any batch of a group fails (a ``require``
statement changed no row, a conflict, any error) the group is rolled back and each of its
batches runs again in its own transaction, so each caller gets exactly the outcome it would
have had alone; so does a COMMIT the server refuses (a deferred constraint). A connection
lost at COMMIT (the outcome is unknown) is every caller's error, never retried. One group
is in flight per process, so two groups of one process never wait on each other's row
locks.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import asyncpg

from omium.store._driver import PARAM, ConflictError, Driver, NoRowsError, Statement

GROUP_MAX = 64  # write batches one COMMIT may cover


@lru_cache(maxsize=512)
def compile_sql(sql: str) -> tuple[str, tuple[str, ...]]:
    names: list[str] = []

    def sub(m: re.Match[str]) -> str:
        if m.group(1) not in names:
            names.append(m.group(1))
        return f"${names.index(m.group(1)) + 1}"

    return PARAM.sub(sub, sql), tuple(names)


def _rowcount(status: str) -> int:
    tail = status.rsplit(" ", 1)[-1]
    return int(tail) if tail.isdigit() else 0


async def _no_reset(conn: asyncpg.Connection) -> None:
    """Skip asyncpg's reset query on every release (12% of a worker's CPU): Omium never
    changes session state (no SET, LISTEN, session locks or temp tables)."""


class PostgresDriver(Driver):
    dialect = "postgresql"

    def __init__(self, dsn: str, *, min_size: int = 1, max_size: int = 10) -> None:
        self.dsn = dsn
        self.min_size, self.max_size = min_size, max_size
        self._pool: asyncpg.Pool | None = None
        self._pending: list[_Pending] = []
        self._committer: asyncio.Task[None] | None = None
        self.commits = self.batches = self.max_group = 0  # what the tests check

    async def open(self) -> None:
        self._pool = await asyncpg.create_pool(self.dsn, min_size=self.min_size,
                                               max_size=self.max_size, reset=_no_reset)

    async def close(self) -> None:
        if self._committer is not None:  # what callers queued is written before closing
            with contextlib.suppress(Exception):
                await self._committer
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("store is not connected")
        return self._pool

    async def fetchall(self, sql: str, params: dict[str, Any] | None = None
                       ) -> list[dict[str, Any]]:
        text, names = compile_sql(sql)
        args = [(params or {})[n] for n in names]
        return [dict(r) for r in await self.pool.fetch(text, *args)]

    async def batch(self, statements: Sequence[Statement], *,
                    require: Sequence[int] = ()) -> list[int]:
        self.batches += 1
        pending = _Pending(statements, require)
        self._pending.append(pending)
        if self._committer is None:
            self._committer = asyncio.ensure_future(self._commit_groups())
        return await pending.future

    async def _batch_alone(self, statements: Sequence[Statement],
                           require: Sequence[int]) -> list[int]:
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                counts = await _run_batch(conn, statements, require)
            self.commits += 1
            return counts
        except asyncpg.IntegrityConstraintViolationError as err:  # unique or foreign key
            raise ConflictError(str(err)) from err

    async def _commit_groups(self) -> None:
        try:
            while self._pending:
                group = self._pending[:GROUP_MAX]
                del self._pending[:GROUP_MAX]
                try:
                    await self._run_group(group)
                except BaseException:  # cancelled (the loop is closing): nobody may hang
                    for p in group:
                        p.future.cancel()
                    raise
        finally:  # no await between the last check of _pending and this
            self._committer = None

    async def _run_group(self, group: list[_Pending]) -> None:
        if len(group) == 1:
            await group[0].settle(self._batch_alone(group[0].statements, group[0].require))
            return
        self.max_group = max(self.max_group, len(group))
        counts: list[list[int]] | None = None
        try:
            async with self.pool.acquire() as conn:
                tr = conn.transaction()
                await tr.start()
                try:
                    counts = [await _run_batch(conn, p.statements, p.require) for p in group]
                except Exception:  # one batch failed: all again, each alone (below)
                    counts = None
                    with contextlib.suppress(Exception):
                        await tr.rollback()
                else:
                    try:
                        await tr.commit()
                        self.commits += 1
                    except asyncpg.PostgresError:  # refused (a deferred constraint): rolled back
                        counts = None
        except Exception as err:  # no connection, or it broke at COMMIT: the outcome is unknown
            for p in group:
                p.fail(err)
            return
        if counts is not None:
            for p, c in zip(group, counts, strict=True):
                p.succeed(c)
            return
        for p in group:  # in order: each sees the writes of those before it
            await p.settle(self._batch_alone(p.statements, p.require))

    async def fetch_in_transaction(self, statements: Sequence[Statement]
                                   ) -> list[list[dict[str, Any]]]:
        async with self.pool.acquire() as conn, conn.transaction():
            out = []
            for sql, params in statements:
                text, names = compile_sql(sql)
                out.append([dict(r) for r in await conn.fetch(text, *[params[n] for n in names])])
            return out

    async def fetch_many(self, queries: Sequence[Statement]) -> list[list[dict[str, Any]]]:
        async with self.pool.acquire() as conn:
            out = []
            for sql, params in queries:
                text, names = compile_sql(sql)
                out.append([dict(r) for r in await conn.fetch(text, *[params[n] for n in names])])
            return out


async def _run_batch(conn: asyncpg.Connection, statements: Sequence[Statement],
                     require: Sequence[int]) -> list[int]:
    counts = []
    for i, (sql, params) in enumerate(statements):
        text, names = compile_sql(sql)
        counts.append(_rowcount(await conn.execute(text, *[params[n] for n in names])))
        if counts[-1] == 0 and i in require:
            raise NoRowsError(i)  # leaving the transaction block rolls it back
    return counts


class _Pending:
    """A caller's write batch waiting for its group; its future resolves after the COMMIT (a
    caller cancelled meanwhile is skipped when settling; its write happened all the same)."""

    __slots__ = ("future", "require", "statements")

    def __init__(self, statements: Sequence[Statement], require: Sequence[int]) -> None:
        self.statements, self.require = statements, require
        self.future: asyncio.Future[list[int]] = asyncio.get_running_loop().create_future()

    def succeed(self, counts: list[int]) -> None:
        if not self.future.done():
            self.future.set_result(counts)

    def fail(self, err: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(err)

    async def settle(self, outcome: Any) -> None:
        try:
            counts = await outcome
        except Exception as err:
            self.fail(err)
        else:
            self.succeed(counts)
