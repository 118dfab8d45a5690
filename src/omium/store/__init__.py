"""Storage: protocols by concern (``Store`` is all of them), on SQLite (default) or
PostgreSQL, selected by URL."""

from __future__ import annotations

import os
from pathlib import Path

from omium.store._postgres import PostgresDriver
from omium.store._sqlite import SQLiteDriver
from omium.store.base import (
    BillingStore,
    ExecutionStore,
    GraphCheckpointStore,
    LeaseStore,
    Store,
    TenantStore,
    WorkerStore,
)
from omium.store.records import (
    CheckpointRecord,
    ConsensusRecord,
    EventRecord,
    ExecutionRecord,
    HandoffRecord,
)
from omium.store.sql_store import SqlStore

DEFAULT_URL = "sqlite:///omium.db"
URL_ENV = "OMIUM_DATABASE_URL"


def database_url() -> str:
    return os.environ.get(URL_ENV) or DEFAULT_URL


def open_store(url: str | None = None) -> Store:
    """A store for ``url`` (default: ``$OMIUM_DATABASE_URL`` or ``./omium.db``); call
    ``await store.connect()`` (or ``async with``) before use.

    ``sqlite:///relative.db``, ``sqlite:////abs/path.db``, ``postgresql://user@host/db``.
    """
    url = url or database_url()
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///"):]
        if not path or path == ":memory:":
            raise ValueError("an in-memory SQLite database cannot be shared with the "
                             "migration step; use a file path")
        path = str(Path(path).resolve())
        return SqlStore(url, SQLiteDriver(path), f"sqlite:///{path}")
    for prefix in ("postgresql://", "postgres://", "postgresql+asyncpg://"):
        if url.startswith(prefix):
            rest = url[len(prefix):]
            return SqlStore(url, PostgresDriver(f"postgresql://{rest}"),
                            f"postgresql+asyncpg://{rest}")
    raise ValueError(f"unsupported database URL {url!r}: use sqlite:///PATH or "
                     "postgresql://USER@HOST:PORT/DB")


__all__ = [
    "DEFAULT_URL",
    "URL_ENV",
    "BillingStore",
    "CheckpointRecord",
    "ConsensusRecord",
    "EventRecord",
    "ExecutionRecord",
    "ExecutionStore",
    "GraphCheckpointStore",
    "HandoffRecord",
    "LeaseStore",
    "SqlStore",
    "Store",
    "TenantStore",
    "WorkerStore",
    "database_url",
    "open_store",
]
