"""Pieces shared by the benchmarks: nearest-rank percentiles, common command-line options,
throwaway PostgreSQL databases on a server URL, bulk inserts into a SQLite ``executions`` table.

Machine facts read from ``/proc`` (CPU seconds, busy cores, free ports) are in
``bench._machine``; agents, schemas and payloads in ``bench.agents``.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from bench._machine import parent_pid

ROOT = Path(__file__).resolve().parent.parent  # the repository root
PG_ENV = "OMIUM_TEST_POSTGRES_URL"  # the default of every benchmark's --postgres


# -- statistics -------------------------------------------------------------------------------

def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a sequence (NaN when empty)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 100))))
    return ordered[rank - 1]


# -- command-line options ---------------------------------------------------------------------

def add_postgres_option(parser: argparse.ArgumentParser, help_rest: str) -> None:
    """``--postgres URL``, defaulting to ``$OMIUM_TEST_POSTGRES_URL``; the help text is
    "PostgreSQL server URL (default $OMIUM_TEST_POSTGRES_URL)" + ``help_rest``."""
    parser.add_argument("--postgres", metavar="URL", default=os.environ.get(PG_ENV),
                        help=f"PostgreSQL server URL (default ${PG_ENV}){help_rest}")


def add_timed_counts(parser: argparse.ArgumentParser, flag: str, what: str, default: int,
                     warmup: int) -> None:
    """``flag`` (timed repetitions) and ``--warmup`` (untimed ones first), e.g. ``what`` =
    "handoffs per mode": "timed handoffs per mode (default 2000)"."""
    parser.add_argument(flag, type=int, default=default,
                        help=f"timed {what} (default {default})")
    parser.add_argument("--warmup", type=int, default=warmup,
                        help=f"untimed {what} first (default {warmup})")


# -- PostgreSQL: a throwaway database on a given server ----------------------------------------

def database_url(server_url: str, name: str) -> str:
    """``server_url`` with its database (the path) replaced by ``name``."""
    return urlunsplit(urlsplit(server_url)._replace(path="/" + name))


async def pg_admin(server_url: str, sql: str) -> None:
    """Run one statement (CREATE/DROP DATABASE) on its own connection to ``server_url``."""
    import asyncpg

    conn = await asyncpg.connect(server_url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


class FreshPgDatabase:
    """A new database ``prefix`` + 12 hex digits on the server at ``server_url`` (``url``
    points at it): ``create`` makes it, ``drop`` removes it WITH (FORCE) once created. As an
    async context manager: created on entry, dropped on exit."""

    def __init__(self, server_url: str, prefix: str) -> None:
        self.server_url = server_url
        self.name = prefix + uuid.uuid4().hex[:12]
        self.url = database_url(server_url, self.name)
        self.created = False

    async def create(self) -> None:
        await pg_admin(self.server_url, f"CREATE DATABASE {self.name}")
        self.created = True

    async def drop(self) -> None:
        if self.created:
            await pg_admin(self.server_url, f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")
            self.created = False

    async def __aenter__(self) -> FreshPgDatabase:
        await self.create()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.drop()


async def postmaster_pid(conn: Any) -> int | None:
    """The PostgreSQL postmaster's pid: the parent of the backend serving the asyncpg
    connection ``conn`` (None when that server runs elsewhere)."""
    return parent_pid(int(await conn.fetchval("SELECT pg_backend_pid()")))


# -- SQLite -------------------------------------------------------------------------------------

def sqlite_insert_executions(conn: sqlite3.Connection, columns: Sequence[str],
                             rows: list[tuple[Any, ...]]) -> None:
    """Insert ``rows`` (tuples in ``columns`` order) into ``executions`` in one write
    transaction (``conn`` in autocommit mode: ``isolation_level=None``)."""
    marks = ", ".join("?" * len(columns))
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany(f"INSERT INTO executions ({', '.join(columns)}) VALUES ({marks})", rows)
    conn.execute("COMMIT")
