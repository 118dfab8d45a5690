"""One agent, all its attempts: timeout, output validation, exponential backoff."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from omium.agents.base import Agent, AgentContext, contained
from omium.agents.runtime import ReviewRequested
from omium.engine.endpoints import ENDPOINTS
from omium.engine.failures import Failure, classify, describe
from omium.errors import OutputValidationError
from omium.jsonsafe import json_problem
from omium.schemas import first_error
from omium.workflow.model import AgentSpec

Sleep = Callable[[float], Awaitable[None]]
OnFailedAttempt = Callable[[str, int, str, str], Awaitable[None]]


@dataclass
class Success:
    output: Any
    attempt: int
    started_at: float
    finished_at: float


async def run_once(agent: Agent, spec: AgentSpec, inputs: Any, ctx: AgentContext) -> Any:
    """One attempt. A sync agent past its timeout keeps its thread (Python cannot kill
    threads) but its result is discarded. Whatever the agent raises is its failure, never the
    process's: ``contained`` sits inside wait_for's task, where asyncio would re-raise
    SystemExit out of the event loop."""
    call = contained(agent.run(inputs, ctx))
    try:
        output = await (asyncio.wait_for(call, spec.timeout_s) if spec.timeout_s else call)
    except ReviewRequested as request:  # no failure, so no retry: the run pauses on it
        return request
    # NaN would be stored as non-JSON, a set or a date as the text of its str()
    if (bad := json_problem(output, "$", only_json=True)) is not None:
        raise OutputValidationError(f"output is not valid JSON at {bad.path}: {bad.reason}")
    schema = spec.output_schema
    if schema is not None and (err := first_error(schema, output)):
        where = err.json_path
        raise OutputValidationError(f"output does not match output_schema at {where}: "
                                    f"{err.message}")
    return output


async def run_with_retries(agent: Agent, spec: AgentSpec, inputs: Any, *, execution_id: str,
                           agent_id: str, tenant_id: str, workflow_name: str,
                           on_failed_attempt: OnFailedAttempt, sleep: Sleep = asyncio.sleep,
                           llm: Any = None) -> Success | Failure:
    """Try up to ``retry.max_attempts`` times; every failed attempt is reported (and stored
    by the caller) with its type and error before the backoff."""
    policy = spec.retry
    attempts = policy.max_attempts
    last: Failure | None = None
    # The model the agent's own OpenAI client should ask for, when its definition names one.
    model = spec.definition.get("model")
    endpoints = ENDPOINTS.get()
    for attempt in range(1, attempts + 1):
        ctx = AgentContext(execution_id, agent_id, attempt, tenant_id, workflow_name, llm,
                           llm_model=model if isinstance(model, str) else None,
                           llm_endpoint=endpoints)
        started = time.time()
        try:
            output = await run_once(agent, spec, inputs, ctx)
        except asyncio.CancelledError:
            raise
        except Exception as err:
            kind = classify(err)
            text = (f"no result within {spec.timeout_s:g}s" if kind == "timeout"
                    else describe(err))
            last = Failure(agent_id, kind, text, attempt)
            await on_failed_attempt(agent_id, attempt, kind, text)
            if attempt < attempts:
                await sleep(policy.delay(attempt))
            continue
        return Success(output, attempt, started, time.time())
    assert last is not None
    return last
