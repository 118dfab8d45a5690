"""Agents the dashboard's browser tests run in a real ``omium serve`` (imported by the serve's
workers from the repository root, as ``tests.browser.dashboard_agents:NAME``)."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

from omium.agents.base import AgentContext

# What an agent hostile to the page would write: the dashboard must show it as text.
SCRIPT = "<script>alert(1)</script>"


async def sleepy(inputs: Any, ctx: AgentContext) -> dict[str, Any]:
    """Runs until cancelled (a minute is far past any test), so it is "running" for as long
    as a test needs it to be."""
    await asyncio.sleep(60)
    return {"slept": True}


def script_output(inputs: Any) -> dict[str, Any]:
    return {"note": SCRIPT, "items": [SCRIPT]}


def gate(inputs: Any, ctx: AgentContext) -> dict[str, Any]:
    """Waits until the test opens this execution's gate (creates the file
    $OMIUM_TEST_GATES/<execution id>: another process, so a file), so a test sees the
    execution running first. Sync: it runs in a thread of its own."""
    path = Path(os.environ["OMIUM_TEST_GATES"]) / ctx.execution_id
    while not path.exists():
        time.sleep(0.05)
    return {"passed": True, "after": inputs}


def flaky4(inputs: Any, ctx: AgentContext) -> dict[str, Any]:
    """Fails its first three attempts, then succeeds: four events (three failures and a
    recovery) and four timeline bars per agent."""
    if ctx.attempt < 4:
        raise ConnectionError(f"transient failure on attempt {ctx.attempt}")
    return {"ok": True, "agent": ctx.agent_id}
