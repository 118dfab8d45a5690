"""SQLite calls made while the writer thread is idle run at once on the caller's thread: the
same results and the same atomicity as through the thread, never a blocked event loop (another
process's lock sends the call to the thread, which waits for it), and the loop still gets to
run its other tasks while a coroutine loops over the store."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest

from omium.store._driver import ConflictError, NoRowsError
from omium.store._sqlite import CHECKPOINT_EVERY, INLINE_AFTER_IDLE_S, SQLiteDriver


async def _driver(path: Path) -> SQLiteDriver:
    driver = SQLiteDriver(str(path))
    await driver.open()
    await driver.batch([("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT UNIQUE,"
                         " body TEXT)", {})])
    # Opening ran on the writer thread: calls go inline once it has been idle a while.
    assert driver._pool is not None
    idle_for = time.monotonic() - driver._pool.idle_since
    await asyncio.sleep(max(0.0, INLINE_AFTER_IDLE_S - idle_for) + 0.001)
    return driver


def _insert(name: str, body: str = "") -> tuple[str, dict[str, str]]:
    return ("INSERT INTO items (name, body) VALUES (:name, :body)", {"name": name, "body": body})


def _wal_size(path: Path) -> int:
    return Path(f"{path}-wal").stat().st_size


async def test_an_idle_store_answers_inline_with_the_same_results(tmp_path: Path) -> None:
    driver = await _driver(tmp_path / "s.db")
    try:
        inline = driver.inline
        assert await driver.batch([_insert("a"), _insert("b")]) == [1, 1]
        rows = await driver.fetchall("SELECT name FROM items ORDER BY name")
        assert [r["name"] for r in rows] == ["a", "b"]
        assert driver.inline - inline == 2  # neither call went through the thread
        # A failing write inline is rolled back whole, as on the thread.
        with pytest.raises(ConflictError):
            await driver.batch([_insert("c"), _insert("a")])
        with pytest.raises(NoRowsError):
            await driver.batch([_insert("d"), ("UPDATE items SET name = 'x' WHERE name = 'zz'",
                                               {})], require=[1])
        rows = await driver.fetchall("SELECT name FROM items ORDER BY name")
        assert [r["name"] for r in rows] == ["a", "b"]
    finally:
        await driver.close()


async def test_another_process_lock_never_blocks_the_loop(tmp_path: Path) -> None:
    """A write that meets another connection's write lock waits on the writer thread (its
    busy timeout), not on the event loop: other tasks keep running, and the write lands once
    the lock is released."""
    path = tmp_path / "s.db"
    driver = await _driver(path)
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # the write lock, as another process would hold it
        write = asyncio.create_task(driver.batch([_insert("late")]))
        ticks = 0
        for _ in range(20):  # the loop runs on while the write waits
            await asyncio.sleep(0.005)
            ticks += 1
        assert ticks == 20 and not write.done()
        other.execute("COMMIT")
        assert await asyncio.wait_for(write, 30) == [1]
        rows = await driver.fetchall("SELECT name FROM items")
        assert [r["name"] for r in rows] == ["late"]
    finally:
        other.close()
        await driver.close()


async def test_a_coroutine_looping_over_the_store_lets_other_tasks_run(tmp_path: Path) -> None:
    driver = await _driver(tmp_path / "s.db")
    try:
        seen: list[int] = []
        done = 0

        async def reader() -> None:
            nonlocal done
            for _ in range(100):
                await driver.fetchall("SELECT count(*) AS n FROM items")
                done += 1

        async def other() -> None:
            seen.append(done)

        task = asyncio.create_task(reader())
        await asyncio.sleep(0)  # the reader starts its loop
        await asyncio.create_task(other())
        await task
        assert seen and seen[0] < 100  # it ran while the reader was looping
    finally:
        await driver.close()


async def test_inline_writes_keep_the_wal_bounded_and_never_wait_for_its_checkpoint(
        tmp_path: Path) -> None:
    """Inline commits leave the WAL's checkpoint (it may fsync) to the writer thread, queued
    once a checkpoint is due and the store has a lull, as an agent waiting on its model gives
    it: the WAL is reused, not grown for good, and no call waits behind the checkpoint."""
    path = tmp_path / "s.db"
    driver = await _driver(path)
    try:
        inline = driver.inline
        body = "x" * 3000
        total, sizes = CHECKPOINT_EVERY * 6, []
        for i in range(total):
            await driver.batch([_insert(f"n{i}", body)])
            await asyncio.sleep(0)  # as an agent's calls come: one at a time
            if i % 100 == 99:
                await asyncio.sleep(0.05)  # the agent waits on its model
                sizes.append(_wal_size(path))
        assert driver.inline - inline == total  # none queued behind a checkpoint
        # 100 commits filled the WAL this far (no checkpoint was due yet); without
        # checkpoints the 1,200 would take twelve times as much.
        assert sizes[-1] < 6 * sizes[0], sizes
        rows = await driver.fetchall("SELECT count(*) AS n FROM items")
        assert rows[0]["n"] == total
    finally:
        await driver.close()
