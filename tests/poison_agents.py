"""Agents that try to take their process down with them (tests/test_poison.py)."""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from typing import Any

from omium.agents.base import AgentContext


def exits(inputs: Any) -> dict[str, Any]:
    sys.exit(3)


async def exits_async(inputs: Any) -> dict[str, Any]:
    sys.exit(3)


def interrupts(inputs: Any) -> dict[str, Any]:
    raise KeyboardInterrupt


async def interrupts_async(inputs: Any) -> dict[str, Any]:
    raise KeyboardInterrupt


async def misuses_generator_exit(inputs: Any) -> dict[str, Any]:
    raise GeneratorExit("not a generator")


async def cancels_itself(inputs: Any) -> dict[str, Any]:
    raise asyncio.CancelledError  # nobody cancelled it: a bug in the agent, not a shutdown


def stop_iteration(inputs: Any) -> dict[str, Any]:
    # A common bug (next() on an empty iterator); asyncio futures refuse StopIteration.
    return next(iter([]))


def accept_exits(data: Any, ctx: AgentContext) -> bool:
    sys.exit(4)


def hard_exit(inputs: Any, ctx: AgentContext) -> dict[str, Any]:
    """Ends its whole process (nothing can catch os._exit) until $OMIUM_TEST_FIXED is set."""
    if not os.environ.get("OMIUM_TEST_FIXED"):
        os._exit(1)
    return {"fixed": True, "by": ctx.agent_id}


def hangs(inputs: Any) -> dict[str, Any]:
    """Blocks its thread for good (a call that never returns): its timeout ends the attempt,
    not the thread."""
    threading.Event().wait()
    raise AssertionError("unreachable")
