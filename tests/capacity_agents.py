"""Agents for tests/test_capacity.py: ones that finish only once N of them are in flight at
the same time (so a worker that runs fewer at once fails them), and ones held until released."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

# Generous: only reached when fewer than N run at once (the test then fails, not hangs).
WAIT_S = 60.0

arrived = 0
_all_in: asyncio.Event | None = None
_barrier: threading.Barrier | None = None
_released: asyncio.Event | None = None
stopped: set[str] = set()  # executions whose held agent was cancelled


def reset(n: int) -> None:
    """Before each test, in its event loop: expect ``n`` agents at once."""
    global arrived, _all_in, _barrier, _released
    arrived = 0
    _all_in, _released = asyncio.Event(), asyncio.Event()
    _barrier = threading.Barrier(n, timeout=WAIT_S)
    stopped.clear()


async def all_at_once(inputs: dict[str, Any]) -> dict[str, Any]:
    """Waits (as on an LLM call) until ``inputs["n"]`` of these are waiting at once."""
    global arrived
    assert _all_in is not None
    arrived += 1
    if arrived >= inputs["n"]:
        _all_in.set()
    await asyncio.wait_for(_all_in.wait(), WAIT_S)
    return {"i": inputs["i"]}


def all_at_once_sync(inputs: dict[str, Any]) -> dict[str, Any]:
    """A blocking agent: its pool thread waits until ``inputs["n"]`` threads wait at once."""
    assert _barrier is not None and _barrier.parties == inputs["n"]
    _barrier.wait()
    return {"i": inputs["i"]}


async def hold(inputs: dict[str, Any], ctx: Any) -> dict[str, Any]:
    """Waits until ``release()``; records being cancelled instead."""
    assert _released is not None
    try:
        await _released.wait()
    except asyncio.CancelledError:
        stopped.add(ctx.execution_id)
        raise
    return {"i": inputs["i"]}


def release() -> None:
    assert _released is not None
    _released.set()
