"""SQLite driver: one connection on one dedicated writer thread, WAL, synchronous=NORMAL.

WAL + synchronous=NORMAL keeps every committed transaction across a killed process (kill -9);
only an OS crash or power loss can lose the last commits.

Group commit: every call is queued to the writer thread, which takes all the calls waiting
(up to ``GROUP_MAX``) and runs their write batches in ONE ``BEGIN IMMEDIATE ... COMMIT``, each
batch inside its own ``SAVEPOINT`` so that a batch that fails (a ``require`` statement that
changed no row, a unique conflict, any statement error) rolls back only itself. Callers are
resolved only after the COMMIT that made their writes durable; if that COMMIT fails, every
caller of the group gets the error. Reads queued between writes run in the same group, in
order, so they see the earlier writes their callers awaited. A call is one thread hop.

Inline when idle: a call made while nothing is queued or running (and the thread has run
nothing for 2 ms) runs at once on the caller's thread, on the same connection, under the
writer's lock. After the loop waited 50 ms on a
model, a read or write through the thread took 0.17 / 0.28 ms (two wake-ups: the writer's,
then the loop's) and takes 0.11 / 0.15 ms inline, and an agent's run makes about ten such
calls one after another (bench/adapters.py; 0.006 / 0.012 ms inline back to back). Inline never
waits: it skips when the lock is taken or the write lock is held by another process (its busy
timeout is 0; the call then queues as usual and waits there), after a few inline calls in a
row (so a coroutine looping over the store still lets the loop run others), and for a call
whose parameters are large. Under load calls are queued, so group commit is unchanged.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from omium.store._driver import ConflictError, Driver, NoRowsError, Statement
from omium.store._sqlite_writer import _PLAIN, _READ, _WRITE, _Call, _settle, _Writer

INLINE_STREAK = 8  # inline calls before the caller must yield to the loop once
# Inline only once the writer has been idle this long: a thread that ran a group just now is
# still awake (a hop costs ~0.05 ms), and under load the thread runs SQL beside the loop's
# Python and commits calls in groups (bench.e2e: 3% fewer executions/s with inline there).
INLINE_AFTER_IDLE_S = 0.002
INLINE_MAX_BYTES = 64 * 1024  # parameters larger than this go to the thread
INLINE_MAX_STATEMENTS = 64
BUSY_TIMEOUT_MS = 30000  # the writer thread waits this long for another process's lock
# Inline commits leave the WAL's checkpoint to the writer thread (it may fsync: ~3 ms here for
# ~700 pages), which runs one after about as many pages as SQLite's own autocheckpoint would:
# CHECKPOINT_EVERY commits at first, then as many as the last checkpoint found took 1000 pages.
CHECKPOINT_EVERY = 200
CHECKPOINT_PAGES = 1000
# A due checkpoint is queued once no inline commit came for this long (an agent waiting on its
# model), so that no call waits behind it; at twice the count it is queued at once.
CHECKPOINT_LULL_S = 0.005

def _busy(err: sqlite3.OperationalError) -> bool:
    """SQLITE_BUSY or SQLITE_LOCKED, extended codes included."""
    return (getattr(err, "sqlite_errorcode", 0) & 0xFF) in (5, 6)


def _small(args: tuple[Any, ...]) -> bool:
    """Whether a call's parameters are small enough to run on the loop's thread. Its first
    argument is one statement's text (its params follow) or a sequence of statements."""
    if not args:
        return False
    first = args[0]
    statements = ((first, args[1]),) if isinstance(first, str) else first
    if len(statements) > INLINE_MAX_STATEMENTS:
        return False
    total = 0
    for _sql, params in statements:
        if params:
            for value in params.values():
                if type(value) is str or type(value) is bytes:
                    total += len(value)
    return total <= INLINE_MAX_BYTES


class SQLiteDriver(Driver):
    dialect = "sqlite"

    def __init__(self, path: str) -> None:
        self.path = path
        # The writer thread; named _pool for bench/_api_profile.py (it has ``submit``).
        self._pool: _Writer | None = None
        self._conn: sqlite3.Connection | None = None
        # For tests and metrics: write calls run, and COMMITs that covered them.
        self.batches = 0
        self.commits = 0
        self.max_group = 0
        self.inline = 0  # calls run inline (for tests and benches)
        # The connection's mode: the writer waits for locks and checkpoints the WAL; an
        # inline call does neither (it must not block the loop), so it sets both to 0.
        self._threaded_mode = True
        self._streak = 0  # inline calls since the loop last ran its other callbacks
        self._since_checkpoint = 0  # inline commits since the last checkpoint was queued
        self._checkpoint_every = CHECKPOINT_EVERY
        self._lull: asyncio.TimerHandle | None = None  # queues a due checkpoint in a lull

    async def open(self) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._pool = _Writer(self)
        self._conn = await self._call(_PLAIN, self._connect)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                               timeout=30.0)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        self._threaded_mode = True
        return conn

    async def close(self) -> None:
        writer = self._pool
        if writer is None:
            return
        self._pool = None  # later calls: "store is not connected"; queued ones still run
        if self._lull is not None:
            self._lull.cancel()
            self._lull = None
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        writer.put(_Call(_PLAIN, self._disconnect, (), fut, loop))  # after the queued calls
        writer.stop()
        try:
            await fut
        finally:
            await asyncio.to_thread(writer.join)

    def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _call(self, kind: int, fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        writer = self._pool
        if writer is None:
            raise RuntimeError("store is not connected")
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        call = _Call(kind, fn, args, fut, loop)
        if (kind != _PLAIN and self._streak < INLINE_STREAK and writer.pending == 0
                and time.monotonic() - writer.idle_since >= INLINE_AFTER_IDLE_S and _small(args)
                and writer.lock.acquire(blocking=False)):
            try:
                # pending is read again under the lock: nothing queued, nothing running
                if writer.pending == 0 and self._run_inline(call, writer, loop):
                    if self._streak == 0:
                        loop.call_soon(self._end_streak)
                    self._streak += 1
                    _settle((call,))
                    return fut
                writer.put_locked(call)
            finally:
                writer.lock.release()
            return fut
        writer.put(call)
        return fut

    def _end_streak(self) -> None:
        self._streak = 0

    def _run_inline(self, call: _Call, writer: _Writer,
                    loop: asyncio.AbstractEventLoop) -> bool:
        """Run ``call`` now, on this thread (the lock held, nothing queued). False: it met
        another process's lock (or a read met a WAL reset) and must be queued instead."""
        conn = self._conn
        if conn is None:
            return False
        if self._threaded_mode:
            conn.execute("PRAGMA busy_timeout=0")
            conn.execute("PRAGMA wal_autocheckpoint=0")
            self._threaded_mode = False
        if call.kind == _READ:
            try:
                call.result = call.fn(*call.args)
            except sqlite3.OperationalError as err:
                if _busy(err):
                    return False
                call.error = err
            except BaseException as err:
                call.error = err
            self.inline += 1
            return True
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                call.result = call.fn(*call.args)
                conn.execute("COMMIT")
            except BaseException:
                call.result = None
                if conn.in_transaction:
                    try:
                        conn.execute("ROLLBACK")
                    except sqlite3.Error:  # the caller hears of the first error, not this one
                        pass
                raise
        except sqlite3.OperationalError as err:
            if _busy(err):  # nothing was written: the writer thread will wait for the lock
                return False
            call.error = err
            return True
        except BaseException as err:
            call.error = err
            return True
        self.inline += 1
        self.commits += 1
        self.batches += 1
        self._since_checkpoint += 1
        if self._since_checkpoint >= 2 * self._checkpoint_every:
            self._queue_checkpoint(writer)
        elif self._since_checkpoint >= self._checkpoint_every:  # due: after the next lull
            if self._lull is not None:
                self._lull.cancel()
            self._lull = loop.call_later(CHECKPOINT_LULL_S, self._after_lull)
        return True

    def _queue_checkpoint(self, writer: _Writer) -> None:
        """The WAL's checkpoint, to the writer thread (off the loop); the lock held."""
        writer.put_locked(_Call(_PLAIN, self._checkpoint, (self._since_checkpoint,),
                                concurrent.futures.Future(), None))
        self._since_checkpoint = 0
        if self._lull is not None:
            self._lull.cancel()
            self._lull = None

    def _after_lull(self) -> None:
        self._lull = None
        writer = self._pool
        if writer is not None:
            with writer.lock:
                if self._since_checkpoint >= self._checkpoint_every:
                    self._queue_checkpoint(writer)

    def _checkpoint(self, commits: int) -> None:
        conn = self._conn
        if conn is not None:
            self._threaded()
            pages = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1]
            if pages > 0:  # the commits that take CHECKPOINT_PAGES, going by these ones
                self._checkpoint_every = max(20, min(5000, commits * CHECKPOINT_PAGES // pages))

    def _threaded(self) -> None:
        """On the writer thread: wait for other processes' locks, checkpoint as usual."""
        if not self._threaded_mode and self._conn is not None:
            self._conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            self._conn.execute("PRAGMA wal_autocheckpoint=1000")
            self._threaded_mode = True

    # -- on the writer thread --------------------------------------------------------------

    def _run_group(self, group: list[_Call]) -> None:
        """Run one drained group: consecutive transactional calls share a transaction; a
        plain call (connect, close, ...) runs between transactions."""
        self._threaded()
        start = 0
        for i, call in enumerate(group):
            if call.kind == _PLAIN:
                if i > start:
                    self._run_segment(group[start:i])
                self._run_plain(call)
                start = i + 1
        if start < len(group):
            self._run_segment(group[start:])

    @staticmethod
    def _run_plain(call: _Call) -> None:
        try:
            call.result = call.fn(*call.args)
        except BaseException as err:
            call.error = err

    def _run_segment(self, calls: list[_Call]) -> None:
        conn = self._conn
        if conn is None:
            for call in calls:
                call.error = RuntimeError("store is not connected")
            return
        writes = sum(1 for c in calls if c.kind == _WRITE)
        if writes == 0:  # reads only: no transaction, as before
            for call in calls:
                self._run_plain(call)
            return
        if len(calls) == 1:  # alone: its own transaction, no savepoint
            self._run_alone(conn, calls[0])
            return
        # IMMEDIATE takes the write lock up front, so a concurrent writer process waits
        # (busy_timeout) instead of failing half-way with SQLITE_BUSY on upgrade.
        try:
            conn.execute("BEGIN IMMEDIATE")
        except BaseException as err:
            for call in calls:
                call.error = err
            return
        for i, call in enumerate(calls):
            try:
                if call.kind == _WRITE:
                    conn.execute("SAVEPOINT omium_call")
                    try:
                        call.result = call.fn(*call.args)
                    except BaseException as err:
                        call.error = err
                        if conn.in_transaction:
                            conn.execute("ROLLBACK TO omium_call")
                            conn.execute("RELEASE omium_call")
                    else:
                        conn.execute("RELEASE omium_call")
                else:
                    self._run_plain(call)
            except BaseException as err:  # the savepoint machinery itself failed
                call.error = err
                self._abandon(conn, calls[:i + 1], err)
                if i + 1 < len(calls):
                    self._run_segment(calls[i + 1:])
                return
            if not conn.in_transaction:
                # SQLite rolled the whole transaction back (disk full, I/O error...): the
                # earlier calls' writes are gone; the later ones get a fresh transaction.
                self._abandon(conn, calls[:i + 1], call.error or RuntimeError(
                    "the transaction was rolled back"))
                if i + 1 < len(calls):
                    self._run_segment(calls[i + 1:])
                return
        try:
            conn.execute("COMMIT")
        except BaseException as err:
            self._abandon(conn, calls, err)
            return
        self.commits += 1
        self.batches += writes
        if len(calls) > self.max_group:
            self.max_group = len(calls)

    @staticmethod
    def _abandon(conn: sqlite3.Connection, calls: Sequence[_Call], err: BaseException) -> None:
        """The group's transaction is lost: every caller in it gets ``err``."""
        if conn.in_transaction:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
        for call in calls:
            if call.error is None:
                call.error = err
            call.result = None

    def _run_alone(self, conn: sqlite3.Connection, call: _Call) -> None:
        try:
            conn.execute("BEGIN IMMEDIATE")
        except BaseException as err:
            call.error = err
            return
        try:
            call.result = call.fn(*call.args)
            conn.execute("COMMIT")
        except BaseException as err:
            call.result = None
            call.error = err
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            return
        self.commits += 1
        self.batches += 1
        if self.max_group < 1:
            self.max_group = 1

    def _fetchall(self, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        assert self._conn is not None
        return [dict(r) for r in self._conn.execute(sql, params).fetchall()]

    def _batch(self, statements: Sequence[Statement], require: Sequence[int] = ()
               ) -> list[int]:
        conn = self._conn
        assert conn is not None
        counts = []
        try:
            for i, (sql, params) in enumerate(statements):
                counts.append(conn.execute(sql, params).rowcount)
                if counts[-1] == 0 and i in require:
                    raise NoRowsError(i)
        except sqlite3.IntegrityError as err:
            raise ConflictError(str(err)) from err
        return counts

    def _fetch_in_transaction(self, statements: Sequence[Statement]
                              ) -> list[list[dict[str, Any]]]:
        conn = self._conn
        assert conn is not None
        return [[dict(r) for r in conn.execute(sql, params).fetchall()]
                for sql, params in statements]

    def _fetch_many(self, queries: Sequence[Statement]) -> list[list[dict[str, Any]]]:
        return [self._fetchall(sql, params) for sql, params in queries]

    # -- on the event loop -----------------------------------------------------------------

    async def fetchall(self, sql: str, params: dict[str, Any] | None = None
                       ) -> list[dict[str, Any]]:
        return await self._call(_READ, self._fetchall, sql, params or {})

    async def batch(self, statements: Sequence[Statement], *,
                    require: Sequence[int] = ()) -> list[int]:
        return await self._call(_WRITE, self._batch, statements, require)

    async def fetch_in_transaction(self, statements: Sequence[Statement]
                                   ) -> list[list[dict[str, Any]]]:
        # e.g. the single-writer claim: one claimer at a time (this thread runs one call at a
        # time; BEGIN IMMEDIATE keeps other processes on the same file out)
        return await self._call(_WRITE, self._fetch_in_transaction, statements)

    async def fetch_many(self, queries: Sequence[Statement]) -> list[list[dict[str, Any]]]:
        return await self._call(_READ, self._fetch_many, queries)

