"""PostgreSQL driver on an asyncpg pool; ``:name`` parameters become ``$n``."""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import asyncpg

from omium.store._driver import ConflictError, Driver, NoRowsError, Statement

_PARAM = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


@lru_cache(maxsize=512)
def compile_sql(sql: str) -> tuple[str, tuple[str, ...]]:
    names: list[str] = []

    def sub(m: re.Match[str]) -> str:
        if m.group(1) not in names:
            names.append(m.group(1))
        return f"${names.index(m.group(1)) + 1}"

    return _PARAM.sub(sub, sql), tuple(names)


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

    async def open(self) -> None:
        self._pool = await asyncpg.create_pool(self.dsn, min_size=self.min_size,
                                               max_size=self.max_size, reset=_no_reset)

    async def close(self) -> None:
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
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                counts = []
                for i, (sql, params) in enumerate(statements):
                    text, names = compile_sql(sql)
                    status = await conn.execute(text, *[params[n] for n in names])
                    counts.append(_rowcount(status))
                    if counts[-1] == 0 and i in require:
                        raise NoRowsError(i)  # leaving the block rolls the transaction back
                return counts
        except asyncpg.IntegrityConstraintViolationError as err:  # unique or foreign key
            raise ConflictError(str(err)) from err

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
