"""Bring a database to the newest Alembic revision, cheaply when it already is there.

Every process start checks the version table with one query; Alembic (and SQLAlchemy's
engine) is imported only when there is something to migrate.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omium.store.migrations import HEAD

if TYPE_CHECKING:
    from omium.store._driver import Driver

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_PG_LOCK_KEY = 0x6F6D69756D  # "omium": serialises concurrent migrators on PostgreSQL


async def current_revision(driver: Driver) -> str | None:
    try:
        row = await driver.fetchone("SELECT version_num FROM alembic_version")
    except Exception:  # no version table yet: a fresh database
        return None
    return None if row is None else row["version_num"]


def _alembic_config(connection: Any) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = connection
    return cfg


def _upgrade_sqlite(sqlalchemy_url: str) -> None:
    from alembic import command
    from sqlalchemy import create_engine

    engine = create_engine(sqlalchemy_url)
    try:
        with engine.begin() as conn:
            command.upgrade(_alembic_config(conn), "head")
    finally:
        engine.dispose()


async def _upgrade_postgres(sqlalchemy_url: str) -> None:
    from alembic import command
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(sqlalchemy_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text(f"SELECT pg_advisory_xact_lock({_PG_LOCK_KEY})"))
            await conn.run_sync(lambda sync: command.upgrade(_alembic_config(sync), "head"))
    finally:
        await engine.dispose()


# One descriptor per database file, open for the life of the process. Closing ANY
# descriptor of a file drops every fcntl lock this process holds on it, SQLite's included:
# the store's connection then no longer counts as a reader of the WAL, and the next
# connection to close checkpoints and deletes the WAL file under it, so its later commits go
# to an unlinked file and are lost to every other process (seen: a CLI run's final status).
# Stores of one process share the descriptor, so a thread lock makes them take turns too.
_LOCK_FDS: dict[str, tuple[int, threading.Lock]] = {}
_LOCK_FDS_GUARD = threading.Lock()


def _sqlite_file_lock(sqlalchemy_url: str) -> tuple[int, threading.Lock]:
    path = os.path.realpath(sqlalchemy_url.split("///", 1)[-1])
    with _LOCK_FDS_GUARD:
        if path not in _LOCK_FDS:
            _LOCK_FDS[path] = (os.open(path, os.O_CREAT | os.O_RDWR, 0o644), threading.Lock())
        fd, lock = _LOCK_FDS[path]
    lock.acquire()
    # Two processes creating one fresh database take turns. flock() on the database file
    # itself: Linux keeps flock and SQLite's fcntl locks apart, and no stray file is left.
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd, lock


async def ensure_migrated(driver: Driver, sqlalchemy_url: str) -> None:
    if await current_revision(driver) == HEAD:
        return
    if driver.dialect == "sqlite":
        fd, lock = await asyncio.to_thread(_sqlite_file_lock, sqlalchemy_url)
        try:
            await asyncio.to_thread(_upgrade_sqlite, sqlalchemy_url)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)  # never os.close (see _LOCK_FDS)
            lock.release()
    else:
        await _upgrade_postgres(sqlalchemy_url)
