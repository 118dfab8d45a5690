"""Agents the tests run: deterministic, and able to fail, stall or record side effects."""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any

from omium.agents.base import Agent, AgentContext
from omium.errors import FieldProblem

# How many times `slow` was cancelled (by a timeout), per execution id.
cancelled: dict[str, int] = {}


def echo(inputs: Any, ctx: AgentContext) -> dict[str, Any]:
    return {"agent": ctx.agent_id, "seen": inputs}


def approve(inputs: Any) -> dict[str, Any]:
    return {"decision": "approve", "score": 0.9}


def reject(inputs: Any) -> dict[str, Any]:
    return {"decision": "reject", "score": 0.2}


def boom(inputs: Any) -> dict[str, Any]:
    raise RuntimeError("agent exploded")


def flaky(inputs: Any, ctx: AgentContext) -> dict[str, Any]:
    """Fails on its first two attempts, then succeeds."""
    if ctx.attempt < 3:
        raise ConnectionError(f"transient failure on attempt {ctx.attempt}")
    return {"ok": True, "attempt": ctx.attempt}


async def slow(inputs: Any, ctx: AgentContext) -> dict[str, Any]:
    try:
        await asyncio.sleep(5)
    except asyncio.CancelledError:
        cancelled[ctx.execution_id] = cancelled.get(ctx.execution_id, 0) + 1
        raise
    return {"slow": True}


def bad_output(inputs: Any) -> dict[str, Any]:
    return {"risk_score": 7}


def refuse(data: Any, ctx: AgentContext) -> tuple[bool, str]:
    return False, "not today"


def side_effect(inputs: Any, ctx: AgentContext) -> dict[str, Any]:
    """Appends (execution, agent, attempt) to $OMIUM_TEST_EFFECTS, then works for
    $OMIUM_TEST_STEP_S seconds, so a test can kill the process mid-workflow."""
    with open(os.environ["OMIUM_TEST_EFFECTS"], "a") as f:
        f.write(json.dumps([ctx.execution_id, ctx.agent_id, ctx.attempt,
                            ctx.idempotency_key, os.getpid()]) + "\n")
        f.flush()
        os.fsync(f.fileno())
    time.sleep(float(os.environ.get("OMIUM_TEST_STEP_S", "0")))
    total = (inputs.get("total", 0) if isinstance(inputs, dict) else 0) + 1
    return {"total": total, "by": ctx.agent_id}


def side_effect_or_fail(inputs: Any, ctx: AgentContext) -> dict[str, Any]:
    """``side_effect``, but raises while $OMIUM_TEST_FAIL_AT names this agent."""
    out = side_effect(inputs, ctx)
    if os.environ.get("OMIUM_TEST_FAIL_AT") == ctx.agent_id:
        raise RuntimeError(f"{ctx.agent_id} is broken")
    return out


def counter(inputs: Any) -> dict[str, Any]:
    """Returns n = how many times it has run (counted in the file $OMIUM_TEST_COUNTER)."""
    path = os.environ["OMIUM_TEST_COUNTER"]
    n = (int(open(path).read()) if os.path.exists(path) else 0) + 1
    with open(path, "w") as f:
        f.write(str(n))
    return {"n": n}


def nap(inputs: Any, ctx: AgentContext) -> dict[str, Any]:
    """A blocking 0.3 s call, to show sync agents do not block each other: it returns when it
    started and ended (monotonic clock), so a test can check naps overlapped."""
    start = time.monotonic()
    time.sleep(0.3)
    return {"napped": True, "agent": ctx.agent_id, "start": start, "end": time.monotonic()}


def flaky_side_effect(inputs: Any, ctx: AgentContext) -> dict[str, Any]:
    """Records its effect, then fails on the first attempt only."""
    out = side_effect(inputs, ctx)
    if ctx.attempt == 1:
        raise ConnectionError("lost the connection after the side effect")
    return out


class ShoutAgent(Agent):
    """A third-party agent kind: ``definition: {text}``; registered through entry points."""

    framework = "shout"

    @classmethod
    def check(cls, spec: Any, base_dir: str | None) -> list[FieldProblem]:
        if not isinstance(spec.definition.get("text"), str):
            return [FieldProblem("definition.text", "required, a string")]
        return []

    async def run(self, inputs: Any, ctx: AgentContext) -> Any:
        return {"shout": self.spec.definition["text"].upper()}


def not_a_number(inputs: Any) -> dict[str, Any]:
    """An output JSON cannot hold: json.dumps would write it as the non-JSON text NaN."""
    return {"score": float("nan")}


def bracketed_error(inputs: Any) -> dict[str, Any]:
    """Fails with text that rich would read as markup: it must be printed literally."""
    raise FileNotFoundError("config [/etc/app.conf] missing; field [amount] must be positive")
