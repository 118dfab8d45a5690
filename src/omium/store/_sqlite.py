"""SQLite driver: one connection on one dedicated thread, WAL, synchronous=NORMAL.

WAL + synchronous=NORMAL keeps every committed transaction across a killed process (kill -9);
only an OS crash or power loss can lose the last commits. A batch is one thread hop.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from omium.store._driver import ConflictError, Driver, NoRowsError, Statement

T = TypeVar("T")


class SQLiteDriver(Driver):
    dialect = "sqlite"

    def __init__(self, path: str) -> None:
        self.path = path
        self._pool: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None

    async def open(self) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="omium-sqlite")
        self._conn = await self._run(self._connect)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                               timeout=30.0)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA busy_timeout=30000")
        return conn

    async def close(self) -> None:
        if self._pool is None:
            return
        conn, self._conn = self._conn, None
        if conn is not None:
            await self._run(conn.close)
        self._pool.shutdown(wait=True)
        self._pool = None

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._pool is None:
            raise RuntimeError("store is not connected")
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def _fetchall(self, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        assert self._conn is not None
        return [dict(r) for r in self._conn.execute(sql, params).fetchall()]

    async def fetchall(self, sql: str, params: dict[str, Any] | None = None
                       ) -> list[dict[str, Any]]:
        return await self._run(self._fetchall, sql, params or {})

    def _batch(self, statements: Sequence[Statement], require: Sequence[int] = ()
               ) -> list[int]:
        conn = self._conn
        assert conn is not None
        # IMMEDIATE takes the write lock up front, so a concurrent writer process waits
        # (busy_timeout) instead of failing half-way with SQLITE_BUSY on upgrade.
        conn.execute("BEGIN IMMEDIATE")
        try:
            counts = []
            for i, (sql, params) in enumerate(statements):
                counts.append(conn.execute(sql, params).rowcount)
                if counts[-1] == 0 and i in require:
                    raise NoRowsError(i)
            conn.execute("COMMIT")
        except sqlite3.IntegrityError as err:
            conn.execute("ROLLBACK")
            raise ConflictError(str(err)) from err
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return counts

    async def batch(self, statements: Sequence[Statement], *,
                    require: Sequence[int] = ()) -> list[int]:
        return await self._run(self._batch, statements, require)

    def _fetch_in_transaction(self, statements: Sequence[Statement]
                              ) -> list[list[dict[str, Any]]]:
        conn = self._conn
        assert conn is not None
        conn.execute("BEGIN IMMEDIATE")  # e.g. the single-writer claim: one claimer at a time
        try:
            out = [[dict(r) for r in conn.execute(sql, params).fetchall()]
                   for sql, params in statements]
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return out

    async def fetch_in_transaction(self, statements: Sequence[Statement]
                                   ) -> list[list[dict[str, Any]]]:
        return await self._run(self._fetch_in_transaction, statements)

    def _fetch_many(self, queries: Sequence[Statement]) -> list[list[dict[str, Any]]]:
        return [self._fetchall(sql, params) for sql, params in queries]

    async def fetch_many(self, queries: Sequence[Statement]) -> list[list[dict[str, Any]]]:
        return await self._run(self._fetch_many, queries)
