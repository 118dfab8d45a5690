"""The thin layer under the store: run SQL with ``:name`` parameters on one backend.

Hot paths (checkpoints, submissions, claims) bypass SQLAlchemy's engine on purpose: it costs
~4x in throughput here. A batch runs as one transaction and, on SQLite, one thread hop.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

Statement = tuple[str, dict[str, Any]]
# A ``:name`` parameter in a statement's text (not a ``::type`` cast).
PARAM = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


class ConflictError(Exception):
    """A unique or foreign-key constraint refused a write (e.g. a second live checkpoint)."""


class NoRowsError(Exception):
    """A statement that had to change a row changed none; the whole batch was rolled back."""

    def __init__(self, index: int) -> None:
        super().__init__(f"statement {index} changed no row")
        self.index = index


class Driver(ABC):
    dialect: str

    @abstractmethod
    async def open(self) -> None: ...

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    async def fetchall(self, sql: str, params: dict[str, Any] | None = None
                       ) -> list[dict[str, Any]]: ...

    async def fetchone(self, sql: str, params: dict[str, Any] | None = None
                       ) -> dict[str, Any] | None:
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None

    @abstractmethod
    async def batch(self, statements: Sequence[Statement], *,
                    require: Sequence[int] = ()) -> list[int]:
        """Run statements in one transaction; return each one's affected row count. If a
        statement whose index is in ``require`` changes no row, roll back: ``NoRowsError``."""

    async def fetch_write(self, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        """Rows from one writing statement (``... RETURNING``), in its own transaction."""
        return (await self.fetch_in_transaction([(sql, params)]))[0]

    @abstractmethod
    async def fetch_in_transaction(self, statements: Sequence[Statement]
                                   ) -> list[list[dict[str, Any]]]:
        """Each statement's rows, all statements in one write transaction."""

    @abstractmethod
    async def fetch_many(self, queries: Sequence[Statement]) -> list[list[dict[str, Any]]]:
        """Several reads at once (one thread hop / one pooled connection)."""

    async def execute(self, sql: str, params: dict[str, Any] | None = None) -> int:
        return (await self.batch([(sql, params or {})]))[0]


def equals(**filters: Any) -> tuple[str, dict[str, Any]]:
    """``col = :col AND ...`` for the filters that are given (not None), with their params.

    Filters are added only when given: "(:x IS NULL OR col = :x)" defeats the indexes and
    leaves PostgreSQL unable to type the parameter. Keys are column names from our code,
    never from users.
    """
    given = {k: v for k, v in filters.items() if v is not None}
    return " AND ".join(["1 = 1", *(f"{k} = :{k}" for k in given)]), given
