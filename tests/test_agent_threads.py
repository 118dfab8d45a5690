"""The sync-agent thread pool: results, exceptions and context reach the awaiting task; idle
threads are reused before new ones start; the cap holds (extra calls wait, none is lost); a
cancelled caller does not break the pool."""

from __future__ import annotations

import asyncio
import contextvars
import threading

import pytest

from omium.agents._threads import AgentThreads

_who: contextvars.ContextVar[str] = contextvars.ContextVar("who", default="nobody")


async def test_result_exception_and_caller_context_reach_the_awaiting_task() -> None:
    pool = AgentThreads(4)
    assert await pool.run(lambda a, b: a + b, 2, 3) == 5
    with pytest.raises(ValueError, match="bad input"):
        await pool.run(_raise, ValueError("bad input"))
    _who.set("tenant-a")
    assert await pool.run(_who.get) == "tenant-a"  # a copy of the caller's context
    assert await pool.run(threading.current_thread) is not threading.current_thread()


async def test_a_stop_iteration_becomes_an_error_instead_of_a_hang() -> None:
    with pytest.raises(RuntimeError, match="StopIteration"):
        await asyncio.wait_for(AgentThreads(1).run(_raise, StopIteration()), 5)


async def test_idle_threads_are_reused_before_new_ones_start() -> None:
    pool = AgentThreads(16)
    for i in range(20):  # one at a time: one thread serves them all
        assert await pool.run(lambda x: x * 2, i) == i * 2
    assert pool.threads == 1


async def test_the_cap_holds_and_calls_past_it_wait_for_a_free_thread() -> None:
    pool = AgentThreads(3)
    gate = threading.Event()
    running = threading.Semaphore(0)

    def blocked(i: int) -> int:
        running.release()
        gate.wait(10)
        return i

    futures = [pool.run(blocked, i) for i in range(7)]
    for _ in range(3):  # three run at once; the other four are queued behind them
        assert await asyncio.to_thread(running.acquire, True, 10)
    assert pool.threads == 3
    assert not any(f.done() for f in futures)
    gate.set()
    assert await asyncio.gather(*futures) == list(range(7))
    assert pool.threads == 3


async def test_a_cancelled_caller_leaves_the_pool_working() -> None:
    pool = AgentThreads(1)
    gate = threading.Event()
    first = pool.run(gate.wait, 10)
    first.cancel()
    gate.set()
    assert await pool.run(lambda: "next") == "next"  # the one thread finished and was reused
    assert pool.threads == 1


def _raise(err: BaseException) -> None:
    raise err
