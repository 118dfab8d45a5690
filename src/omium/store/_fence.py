"""The lease fence: a run's writes land only while its execution still has the run's lease
epoch, checked in the same transaction as the writes.

``fenced`` runs a batch behind a statement that changes (SQLite) or locks (PostgreSQL) the
execution's row only while ``lease_epoch`` is the run's: it serialises with a claim, and
once another worker owns the execution the whole batch rolls back (``StaleLeaseError``).

On PostgreSQL the batch's leading INSERTs ride in one statement with the fence (data-modifying
``WITH`` queries, each ``INSERT ... SELECT ... FROM fence``): a checkpoint with its handoff is
one round trip instead of three. They insert their rows, or none once the lease moved on.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache

from omium.errors import StaleLeaseError
from omium.store._driver import PARAM, Driver, NoRowsError, Statement

_PG_FENCE = ("SELECT 1 FROM executions WHERE id = :fence_e AND lease_epoch = :fence_epoch "
             "FOR NO KEY UPDATE")
_INSERT_VALUES = re.compile(r"INSERT INTO (\w+) \(([^()]*)\) VALUES \((.*)\)", re.S)


def _fence(execution_id: str, epoch: int, dialect: str) -> Statement:
    """PostgreSQL takes the lock an UPDATE would (``FOR NO KEY UPDATE``) without writing a new
    row version of the execution per checkpoint; SQLite's writer holds the database's one
    write lock for the whole group, and there a no-op UPDATE is what gives a row count."""
    if dialect == "postgresql":
        return _PG_FENCE, {"fence_e": execution_id, "fence_epoch": epoch}
    return ("UPDATE executions SET lease_epoch = lease_epoch WHERE id = :e "
            "AND lease_epoch = :epoch", {"e": execution_id, "epoch": epoch})


@lru_cache(maxsize=256)
def _insert_table(sql: str) -> str | None:
    """The table of a plain ``INSERT ... VALUES``, else None (cached: the same few texts
    pass here on every checkpoint)."""
    m = _INSERT_VALUES.fullmatch(sql)
    return None if m is None else m[1]


def _leading_inserts(stmts: Sequence[Statement]) -> int:
    """How many statements from the first are plain ``INSERT ... VALUES`` into pairwise
    different tables (rows of one table keep the order of their ids only as separate
    statements: the parts of one ``WITH`` run in no set order)."""
    tables: set[str] = set()
    for sql, _ in stmts:
        table = _insert_table(sql)
        if table is None or table in tables:
            break
        tables.add(table)
    return len(tables)


@lru_cache(maxsize=256)
def _merged(sqls: tuple[str, ...]) -> str:
    """``WITH fence AS (...), w0 AS (INSERT ... SELECT ... FROM fence RETURNING 1), ...
    INSERT ... SELECT ... FROM fence``, statement i's parameters renamed ``:s<i>_name``.
    PostgreSQL types the parameters from the target columns, as for VALUES."""
    parts = []
    for i, sql in enumerate(sqls):
        m = _INSERT_VALUES.fullmatch(sql)
        assert m is not None  # _leading_inserts matched it
        values = PARAM.sub(lambda p, i=i: f":s{i}_{p[1]}", m[3])
        parts.append(f"INSERT INTO {m[1]} ({m[2]}) SELECT {values} FROM fence")
    ctes = [f"fence AS ({_PG_FENCE})",
            *(f"w{i} AS ({part} RETURNING 1)" for i, part in enumerate(parts[:-1]))]
    return f"WITH {', '.join(ctes)} {parts[-1]}"


async def fenced(driver: Driver, execution_id: str, epoch: int | None,
                 stmts: list[Statement], require: Sequence[int] = ()) -> list[int]:
    """Run ``stmts`` in one transaction behind the fence. A statement in ``require`` (an
    index into ``stmts``) that changes no row rolls everything back: ``NoRowsError`` with
    that index; the fence failing is ``StaleLeaseError`` instead."""
    if epoch is None:
        return await driver.batch(stmts, require=require)
    k = _leading_inserts(stmts) if driver.dialect == "postgresql" else 0
    if k:
        params = {"fence_e": execution_id, "fence_epoch": epoch}
        for i, (_, p) in enumerate(stmts[:k]):
            params.update({f"s{i}_{name}": value for name, value in p.items()})
        first = (_merged(tuple(sql for sql, _ in stmts[:k])), params)
        try:  # the merged statement inserting nothing can only be the fence failing
            counts = await driver.batch(
                [first, *stmts[k:]], require=[0, *(i - k + 1 for i in require if i >= k)])
        except NoRowsError as err:
            if err.index == 0:
                raise _stale(execution_id, epoch) from None
            raise NoRowsError(err.index + k - 1) from None
        return [1] * k + counts[1:]  # each INSERT ... VALUES inserted its one row
    try:
        counts = await driver.batch([_fence(execution_id, epoch, driver.dialect), *stmts],
                                    require=[0, *(i + 1 for i in require)])
    except NoRowsError as err:
        if err.index == 0:
            raise _stale(execution_id, epoch) from None
        raise NoRowsError(err.index - 1) from None
    return counts[1:]


def _stale(execution_id: str, epoch: int) -> StaleLeaseError:
    return StaleLeaseError(f"execution {execution_id}: lease epoch {epoch} is no longer "
                           "current; another worker owns it")
