"""``omium.aio.shielded``: ``asyncio.shield`` semantics for a coroutine, whether it finishes
without suspending or not (the gateway bills every call through it)."""

from __future__ import annotations

import asyncio

import pytest

from omium.aio import shielded


async def test_a_coroutine_that_never_suspends_gives_its_value_or_its_error() -> None:
    async def value() -> int:
        return 7

    async def error() -> int:
        raise ValueError("no")

    assert await shielded(value()) == 7
    with pytest.raises(ValueError, match="no"):
        await shielded(error())


async def test_a_suspending_coroutine_gets_what_it_awaits_and_finishes() -> None:
    loop = asyncio.get_running_loop()
    first, second = loop.create_future(), loop.create_future()
    loop.call_soon(first.set_result, 2)
    loop.call_later(0.01, second.set_exception, KeyError("k"))

    async def body() -> tuple[int, str]:
        a = await first
        await asyncio.sleep(0)  # a bare yield to the loop on the way
        try:
            await second
        except KeyError as err:
            return a * 10, str(err)
        return a, "not raised"

    assert await shielded(body()) == (20, "'k'")


async def test_cancelling_the_caller_does_not_cancel_the_coroutine() -> None:
    gate, done = asyncio.Event(), []

    async def write() -> str:
        await gate.wait()
        done.append("written")
        return "ok"

    caller = asyncio.create_task(shielded(write()))
    await asyncio.sleep(0)  # the write is suspended at the gate
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert done == []
    gate.set()
    for _ in range(10):
        await asyncio.sleep(0)
    assert done == ["written"]  # it carried on to its end
