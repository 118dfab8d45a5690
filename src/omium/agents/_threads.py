"""The threads sync Python agents run in: a pool that hands each call's result straight to an
asyncio future.

``loop.run_in_executor(ThreadPoolExecutor)`` builds a ``concurrent.futures.Future`` (with its
own ``threading.Condition``), chains it to an asyncio future and takes a semaphore per call:
measured under ``bench.e2e`` (three sync agents per execution) that was 8.5% of the server's
busy time, most of it in ``Condition.__init__``. Here a call is one queue item, and the
worker thread resolves the caller's asyncio future with one ``call_soon_threadsafe``.

Threads start only when no idle one is waiting, up to ``max_threads``; they are daemon
threads, so an agent stuck in a blocking call cannot hold ``omium serve`` open after its
graceful shutdown (its execution is released or resumes from its last checkpoint, as after
a crash).
"""

from __future__ import annotations

import asyncio
import contextvars
import queue
import threading
from collections.abc import Callable
from typing import Any

_Item = tuple[Callable[..., Any], tuple[Any, ...], contextvars.Context,
              asyncio.AbstractEventLoop, asyncio.Future[Any]]


def _resolve(fut: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if fut.cancelled():  # the awaiting task went away; the thread's result has no taker
        return
    if ok:
        fut.set_result(value)
    elif isinstance(value, StopIteration):  # a future refuses it (callers wrap it first)
        fut.set_exception(RuntimeError(f"StopIteration raised in a thread: {value!r}"))
    else:
        fut.set_exception(value)


class AgentThreads:
    def __init__(self, max_threads: int, name: str = "omium-agent") -> None:
        self.max_threads = max_threads
        self.name = name
        self._items: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = 0
        self._idle = 0  # threads waiting for an item that no submitted item has claimed yet

    @property
    def threads(self) -> int:
        return self._threads

    def run(self, fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        """``fn(*args)`` in a pool thread, in a copy of the caller's context; the returned
        future (of the running loop) gets its result or exception."""
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        with self._lock:
            if self._idle > 0:
                self._idle -= 1
                start = False
            else:
                start = self._threads < self.max_threads
                if start:
                    self._threads += 1
        self._items.put((fn, args, contextvars.copy_context(), loop, fut))
        if start:  # else: every thread is busy at the cap; the item waits for the next free
            threading.Thread(target=self._work, name=f"{self.name}-{self._threads}",
                             daemon=True).start()
        return fut

    def _work(self) -> None:
        while True:
            fn, args, ctx, loop, fut = self._items.get()
            try:
                value, ok = ctx.run(fn, *args), True
            except BaseException as err:  # handed to the awaiting task, which decides
                value, ok = err, False
            del fn, args, ctx
            # Counted idle before the caller hears back: whatever it submits next finds this
            # thread instead of starting another.
            with self._lock:
                self._idle += 1
            try:
                loop.call_soon_threadsafe(_resolve, fut, ok, value)
            except RuntimeError:  # the loop was closed while the agent ran: nobody waits
                pass
            del loop, fut, value
