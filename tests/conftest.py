"""Shared fixtures: a fresh database per test, on SQLite and (when given) PostgreSQL.

PostgreSQL tests need ``OMIUM_TEST_POSTGRES_URL`` (``scripts/test.sh`` starts a throwaway
server and sets it; CI always does). Each test gets its own database cloned from a migrated
template, so tests never see each other's rows.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from omium.store import URL_ENV, Store, open_store
from tests._api_harness import Api, serve

PG_ENV = "OMIUM_TEST_POSTGRES_URL"
ROOT = Path(__file__).resolve().parent.parent
_template_ready: dict[str, str] = {}


def _pg_url() -> str | None:
    return os.environ.get(PG_ENV) or None


def _with_db(url: str, name: str) -> str:
    return url.rsplit("/", 1)[0] + "/" + name


async def _make_pg_database() -> str:
    admin_url = _pg_url()
    assert admin_url is not None
    template = "omium_template"
    if admin_url not in _template_ready:
        conn = await asyncpg.connect(admin_url)
        try:
            await conn.execute(f"DROP DATABASE IF EXISTS {template}")
            await conn.execute(f"CREATE DATABASE {template}")
        finally:
            await conn.close()
        store = open_store(_with_db(admin_url, template))
        await store.connect()  # runs the migrations once into the template
        await store.close()
        _template_ready[admin_url] = template
    name = "t_" + uuid.uuid4().hex[:16]
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f"CREATE DATABASE {name} TEMPLATE {template}")
    finally:
        await conn.close()
    return _with_db(admin_url, name)


async def _drop_pg_database(url: str) -> None:
    admin_url = _pg_url()
    assert admin_url is not None
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {url.rsplit('/', 1)[1]} WITH (FORCE)")
    finally:
        await conn.close()


@pytest.fixture(autouse=True)
def _default_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Code that uses the default store (the plan's own tests) writes to a per-test file.
    monkeypatch.setenv(URL_ENV, f"sqlite:///{tmp_path}/default.db")
    # API clients may name agents from these packages only (the tests' own agents).
    monkeypatch.setenv("OMIUM_ALLOWED_MODULES", "tests,examples,bench")


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database URL for each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/omium.db"
    else:
        yield from _fresh_pg_database()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database (for tests that only make sense there)."""
    yield from _fresh_pg_database()


def _fresh_pg_database() -> Iterator[str]:
    if _pg_url() is None:
        pytest.skip(f"PostgreSQL not configured: set {PG_ENV} (scripts/test.sh does)")
    url = asyncio.run(_make_pg_database())
    yield url
    asyncio.run(_drop_pg_database(url))


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    s = open_store(database_url)
    await s.connect()
    yield s
    await s.close()


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[Store]:
    s = open_store(f"sqlite:///{tmp_path}/omium.db")
    await s.connect()
    yield s
    await s.close()


# -- the REST service in-process (tests/_api_harness.py)
@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    async with serve(f"sqlite:///{tmp_path}/api.db", max_body_bytes=64 * 1024,
                     sse_poll_s=0.05) as a:
        yield a


@pytest.fixture
async def any_api(database_url: str) -> AsyncIterator[Api]:
    """The service on SQLite and on PostgreSQL."""
    async with serve(database_url) as a:
        yield a
