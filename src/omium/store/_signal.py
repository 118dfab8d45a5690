"""This process's "an execution was queued" signal, so idle in-process workers (``omium
serve``) start a submitted execution at once instead of at their next poll."""

from __future__ import annotations

import asyncio


class QueueSignal:
    """One event per generation: ``queued()`` sets the current one and starts the next, so a
    worker that took ``current()`` before reading the queue cannot miss a submit that lands
    after its read (the event it holds is set), and an event once set is never cleared under
    another waiter."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def current(self) -> asyncio.Event:
        return self._event

    def queued(self) -> None:
        self._event.set()
        self._event = asyncio.Event()
