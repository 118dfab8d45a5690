"""Group commit on PostgreSQL: write batches that arrive while a group is in flight share the
next group's one transaction; a batch that fails there (or a COMMIT the server refuses) sends
each batch of the group back to its own transaction, so every caller gets its own outcome."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from omium.store._driver import ConflictError, NoRowsError
from omium.store._postgres import PostgresDriver

_SCHEMA = [
    ("CREATE TABLE items (id SERIAL PRIMARY KEY, name TEXT NOT NULL UNIQUE)", {}),
    ("CREATE TABLE parent (id INTEGER PRIMARY KEY)", {}),
    ("CREATE TABLE child (id SERIAL PRIMARY KEY, parent_id INTEGER"
     " REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED)", {}),
]


@pytest.fixture
async def driver(postgres_url: str) -> AsyncIterator[PostgresDriver]:
    d = PostgresDriver(postgres_url)
    await d.open()
    for stmt in _SCHEMA:
        await d.batch([stmt])
    yield d
    await d.close()


def _insert(name: str) -> tuple[str, dict[str, str]]:
    return ("INSERT INTO items (name) VALUES (:name)", {"name": name})


async def _names(d: PostgresDriver) -> set[str]:
    return {r["name"] for r in await d.fetchall("SELECT name FROM items")}


async def _queued(*coros):  # type: ignore[no-untyped-def]
    """Start the calls in one tick: each queues its batch before the first group runs."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    await asyncio.sleep(0)
    return tasks


async def test_two_hundred_concurrent_batches_all_commit_and_share_commits(
        driver: PostgresDriver) -> None:
    commits, batches = driver.commits, driver.batches
    assert await asyncio.gather(*(driver.batch([_insert(f"n{i}")]) for i in range(200))
                                ) == [[1]] * 200
    assert driver.batches - batches == 200
    assert driver.commits - commits <= 8  # groups of up to 64, not a COMMIT each
    assert driver.max_group > 1
    assert await _names(driver) == {f"n{i}" for i in range(200)}


async def test_a_failing_batch_gets_its_own_outcome_and_the_others_commit(
        driver: PostgresDriver) -> None:
    await driver.batch([_insert("taken")])
    ok1, no_row, conflict, ok2 = await _queued(
        driver.batch([_insert("a1"), _insert("a2")]),
        driver.batch([_insert("b"), ("UPDATE items SET name = 'x' WHERE id = -1", {})],
                     require=[1]),
        driver.batch([_insert("c"), _insert("taken")]),
        driver.batch([_insert("d")]),
    )
    assert await ok1 == [1, 1]
    with pytest.raises(NoRowsError) as no_rows:
        await no_row
    assert no_rows.value.index == 1
    with pytest.raises(ConflictError):
        await conflict
    assert await ok2 == [1]
    assert driver.max_group == 4
    # "b" and "c" rolled back with their own batch only
    assert await _names(driver) == {"taken", "a1", "a2", "d"}


async def test_a_commit_the_server_refuses_fails_only_the_batch_that_caused_it(
        driver: PostgresDriver) -> None:
    # A deferred foreign key is checked at COMMIT: the one way to make COMMIT itself fail.
    innocent, orphan = await _queued(
        driver.batch([_insert("innocent")]),
        driver.batch([("INSERT INTO child (parent_id) VALUES (42)", {})]),
    )
    assert await innocent == [1]
    with pytest.raises(ConflictError):
        await orphan
    assert await _names(driver) == {"innocent"}
    assert await driver.fetchall("SELECT * FROM child") == []


async def test_a_statement_error_is_the_callers_own(driver: PostgresDriver) -> None:
    bad, good = await _queued(
        driver.batch([_insert("x"), ("INSERT INTO nowhere VALUES (1)", {})]),
        driver.batch([_insert("y")]),
    )
    with pytest.raises(asyncpg.UndefinedTableError):
        await bad
    assert await good == [1]
    assert await _names(driver) == {"y"}


async def test_close_writes_what_was_queued(postgres_url: str) -> None:
    d = PostgresDriver(postgres_url)
    await d.open()
    await d.batch([_SCHEMA[0]])
    tasks = await _queued(*(d.batch([_insert(f"n{i}")]) for i in range(100)))
    await d.close()
    assert await asyncio.gather(*tasks) == [[1]] * 100
    d = PostgresDriver(postgres_url)
    await d.open()
    try:
        assert await _names(d) == {f"n{i}" for i in range(100)}
    finally:
        await d.close()
