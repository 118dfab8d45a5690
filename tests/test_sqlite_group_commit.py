"""Group commit on the SQLite writer thread: concurrent write calls share one COMMIT, each
in its own savepoint, and each caller is resolved only after that COMMIT."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest

from omium.store._driver import ConflictError, NoRowsError
from omium.store._sqlite import SQLiteDriver

_SCHEMA = [
    ("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE)", {}),
    ("CREATE TABLE parent (id INTEGER PRIMARY KEY)", {}),
    ("CREATE TABLE child (id INTEGER PRIMARY KEY, parent_id INTEGER"
     " REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED)", {}),
]


async def _driver(path: Path) -> SQLiteDriver:
    driver = SQLiteDriver(str(path))
    await driver.open()
    await driver.batch(_SCHEMA)
    return driver


def _insert(name: str) -> tuple[str, dict[str, str]]:
    return ("INSERT INTO items (name) VALUES (:name)", {"name": name})


def _names(path: Path) -> set[str]:
    conn = sqlite3.connect(path)
    try:
        return {row[0] for row in conn.execute("SELECT name FROM items")}
    finally:
        conn.close()


def _hold(driver: SQLiteDriver) -> threading.Event:
    """Keep the writer thread busy until the returned event is set, so that every call
    made meanwhile waits in its queue and lands in one group."""
    started, gate = threading.Event(), threading.Event()
    assert driver._pool is not None

    def held() -> None:
        started.set()
        gate.wait(30)

    driver._pool.submit(held)
    assert started.wait(30)
    return gate


async def _queued(*coros):  # type: ignore[no-untyped-def]
    tasks = [asyncio.create_task(c) for c in coros]
    await asyncio.sleep(0)  # every task has queued its call
    return tasks


async def test_two_hundred_concurrent_batches_all_commit_and_share_commits(tmp_path: Path
                                                                           ) -> None:
    path = tmp_path / "g.db"
    driver = await _driver(path)
    commits, batches = driver.commits, driver.batches
    gate = _hold(driver)
    tasks = await _queued(*(driver.batch([_insert(f"n{i}")]) for i in range(200)))
    gate.set()
    assert await asyncio.gather(*tasks) == [[1]] * 200
    assert driver.batches - batches == 200
    assert driver.commits - commits < 200  # they shared COMMITs
    assert driver.max_group > 1
    # and free-running concurrent callers, without the writer held
    assert await asyncio.gather(*(driver.batch([_insert(f"m{i}")]) for i in range(200))
                                ) == [[1]] * 200
    await driver.close()
    assert _names(path) == {f"n{i}" for i in range(200)} | {f"m{i}" for i in range(200)}


async def test_a_failing_batch_in_a_group_rolls_back_only_itself(tmp_path: Path) -> None:
    path = tmp_path / "g.db"
    driver = await _driver(path)
    await driver.batch([_insert("taken")])
    commits = driver.commits
    gate = _hold(driver)
    ok1, no_row, conflict, ok2, read = await _queued(
        driver.batch([_insert("a1"), _insert("a2")]),
        driver.batch([_insert("b"), ("UPDATE items SET name = 'x' WHERE id = -1", {})],
                     require=[1]),
        driver.batch([_insert("c"), _insert("taken")]),
        driver.batch([_insert("d")]),
        driver.fetchall("SELECT name FROM items ORDER BY name"),
    )
    gate.set()
    assert await ok1 == [1, 1]
    with pytest.raises(NoRowsError) as no_rows:
        await no_row
    assert no_rows.value.index == 1
    with pytest.raises(ConflictError):
        await conflict
    assert await ok2 == [1]
    # the read queued after them sees the group's surviving writes, in order
    assert [r["name"] for r in await read] == ["a1", "a2", "d", "taken"]
    assert driver.commits - commits == 1  # one COMMIT for the whole group
    assert driver.max_group == 5
    await driver.close()
    assert _names(path) == {"taken", "a1", "a2", "d"}


async def test_a_failing_commit_fails_every_caller_of_its_group(tmp_path: Path) -> None:
    # A deferred foreign key is checked at COMMIT: the one way to make COMMIT itself fail.
    path = tmp_path / "g.db"
    driver = await _driver(path)
    gate = _hold(driver)
    innocent, orphan, read = await _queued(
        driver.batch([_insert("innocent")]),
        driver.batch([("INSERT INTO child (parent_id) VALUES (42)", {})]),
        driver.fetchall("SELECT name FROM items"),
    )
    gate.set()
    for task in (innocent, orphan, read):
        with pytest.raises(sqlite3.IntegrityError):
            await task
    # nothing of the group stayed, and the connection is out of the transaction
    assert driver._conn is not None and not driver._conn.in_transaction
    assert await driver.batch([_insert("after")]) == [1]
    await driver.close()
    assert _names(path) == {"after"}


async def test_close_resolves_the_calls_in_flight_then_refuses_new_ones(tmp_path: Path
                                                                        ) -> None:
    path = tmp_path / "g.db"
    driver = await _driver(path)
    gate = _hold(driver)
    tasks = await _queued(*(driver.batch([_insert(f"n{i}")]) for i in range(50)))
    closing = asyncio.create_task(driver.close())
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="store is not connected"):
        await driver.batch([_insert("late")])
    gate.set()
    await closing
    assert await asyncio.gather(*tasks) == [[1]] * 50
    with pytest.raises(RuntimeError, match="store is not connected"):
        await driver.fetchall("SELECT 1")
    assert _names(path) == {f"n{i}" for i in range(50)}


async def test_a_statement_error_is_the_callers_own_and_leaves_no_transaction(
        tmp_path: Path) -> None:
    path = tmp_path / "g.db"
    driver = await _driver(path)
    gate = _hold(driver)
    bad, good, bad_read = await _queued(
        driver.batch([_insert("x"), ("INSERT INTO nowhere VALUES (1)", {})]),
        driver.batch([_insert("y")]),
        driver.fetchall("SELECT * FROM nowhere"),
    )
    gate.set()
    with pytest.raises(sqlite3.OperationalError):
        await bad
    assert await good == [1]
    with pytest.raises(sqlite3.OperationalError):
        await bad_read
    assert driver._conn is not None and not driver._conn.in_transaction
    await driver.close()
    assert _names(path) == {"y"}
