"""``shielded``: ``asyncio.shield`` for a coroutine, without a task when none is needed.

``asyncio.shield(coro)`` wraps the coroutine in a task before it runs a single line, and the
caller resumes only on the loop's next turns. A usage record's write to an idle SQLite store
completes without ever suspending (``store/_sqlite.py`` runs it inline), so that task bought
nothing and cost ~0.05 ms per gateway call. ``shielded`` runs the coroutine at once; only if
it suspends is the rest of it handed to a task, shielded from the caller's cancellation as
``asyncio.shield`` does. (Python 3.12's eager tasks do the same; Omium runs on 3.11.)
"""

from __future__ import annotations

import asyncio
import types
from collections.abc import Coroutine, Generator
from typing import Any, TypeVar

T = TypeVar("T")


async def shielded(coro: Coroutine[Any, Any, T]) -> T:
    """Await ``coro`` to its end even if the caller is cancelled meanwhile (the caller then
    gets ``CancelledError`` and the coroutine carries on, as with ``asyncio.shield``)."""
    try:
        waiting = coro.send(None)
    except StopIteration as done:  # it finished without suspending
        return done.value
    return await asyncio.shield(_rest(coro, waiting))


async def _rest(coro: Coroutine[Any, Any, T], waiting: Any) -> T:
    return await _carry_on(coro, waiting)


@types.coroutine
def _carry_on(coro: Coroutine[Any, Any, T], waiting: Any) -> Generator[Any, Any, T]:
    """Drive ``coro`` on from where it suspended (on ``waiting``, the future it awaits) as the
    task running this frame would drive it: what the task sends or throws goes to it."""
    while True:
        try:
            sent = yield waiting
        except BaseException as err:
            try:
                waiting = coro.throw(err)
            except StopIteration as done:
                return done.value
        else:
            try:
                waiting = coro.send(sent)
            except StopIteration as done:
                return done.value
