"""The SQLite driver's writer thread: the queue of calls, the thread that drains it into groups
(``SQLiteDriver._run_group`` runs each group in one transaction), and the delivery of each
call's result to the event loop that made it (one callback per group and loop).

``pending`` counts the calls queued or running, under ``lock``: with none, and the thread idle
for a while, ``SQLiteDriver`` runs a call inline instead (see ``omium.store._sqlite``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from omium.store._sqlite import SQLiteDriver

GROUP_MAX = 256  # calls one COMMIT may cover

# Kinds of queued call.
_READ = 0  # fn(*args) on the connection; joins a group but needs no transaction of its own
_WRITE = 1  # fn(*args) writes: runs inside the group's transaction, in its own savepoint
_PLAIN = 2  # fn(*args) outside any transaction (connect, close, profiler hooks)
_STOP = object()


class _Call:
    __slots__ = ("args", "error", "fn", "future", "kind", "loop", "result")

    def __init__(self, kind: int, fn: Callable[..., Any], args: tuple[Any, ...],
                 future: Any, loop: asyncio.AbstractEventLoop | None) -> None:
        self.kind, self.fn, self.args = kind, fn, args
        self.future, self.loop = future, loop  # loop None: a concurrent.futures.Future
        self.result: Any = None
        self.error: BaseException | None = None


def _settle(calls: Sequence[_Call]) -> None:
    """On the event loop: set each caller's future (one callback per group and loop)."""
    for call in calls:
        fut = call.future
        if fut.done():  # the caller was cancelled; its write happened all the same
            continue
        if call.error is not None:
            fut.set_exception(call.error)
        else:
            fut.set_result(call.result)


class _Writer:
    """The dedicated thread and its queue. ``submit`` runs a plain function on the thread
    (``concurrent.futures`` style, used by bench/_api_profile.py to profile this thread)."""

    def __init__(self, driver: SQLiteDriver) -> None:
        self._driver = driver
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        # Guards ``pending`` (calls queued or running); an inline call runs holding it, so a
        # call queued by another thread meanwhile waits for that call to finish.
        self.lock = threading.Lock()
        self.pending = 0
        self.idle_since = 0.0  # time.monotonic() when the thread last ran out of work
        self._thread = threading.Thread(target=self._main, name="omium-sqlite", daemon=True)
        self._thread.start()

    def put(self, call: _Call) -> None:
        with self.lock:
            self.put_locked(call)

    def put_locked(self, call: _Call) -> None:
        self.pending += 1
        self._queue.put(call)

    def submit(self, fn: Callable[..., Any], *args: Any) -> concurrent.futures.Future[Any]:
        fut: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self.put(_Call(_PLAIN, fn, args, fut, None))
        return fut

    def stop(self) -> None:
        self._queue.put(_STOP)

    def join(self) -> None:
        self._thread.join()

    def _main(self) -> None:
        get, get_nowait = self._queue.get, self._queue.get_nowait
        stopping = False
        while not stopping:
            first = get()
            if first is _STOP:
                break
            group = [first]
            while len(group) < GROUP_MAX:
                try:
                    item = get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stopping = True
                    break
                group.append(item)
            try:
                self._driver._run_group(group)
            except BaseException as err:  # never lose a caller, never kill the thread
                for call in group:
                    if call.error is None and call.result is None:
                        call.error = err
            with self.lock:  # before delivering: the callers' next calls may run inline
                self.pending -= len(group)
                self.idle_since = time.monotonic()
            _deliver(group)
        leftover = []  # queued after close() by another thread: refuse, never hang
        while True:
            try:
                item = get_nowait()
            except queue.Empty:
                break
            if item is not _STOP:
                item.error = RuntimeError("store is not connected")
                leftover.append(item)
        _deliver(leftover)


def _deliver(group: Sequence[_Call]) -> None:
    by_loop: dict[asyncio.AbstractEventLoop, list[_Call]] = {}
    for call in group:
        if call.loop is None:
            fut = call.future
            if not fut.done():
                if call.error is not None:
                    fut.set_exception(call.error)
                else:
                    fut.set_result(call.result)
        else:
            by_loop.setdefault(call.loop, []).append(call)
    for loop, calls in by_loop.items():
        try:
            loop.call_soon_threadsafe(_settle, calls)
        except RuntimeError:  # that loop is closed: nobody is waiting any more
            pass
