"""The CLI run's in-process gateway (``omium.llm.local_gateway``): its requests run in a
context of their own, not in that of the agent that happened to start it."""

from __future__ import annotations

import asyncio
import contextvars
from typing import Any

import httpx
import pytest

from omium.llm.gateway import Gateway
from omium.llm.local_gateway import LocalGateway

AGENT_VAR: contextvars.ContextVar[str | None] = contextvars.ContextVar("agent_var", default=None)


async def test_requests_do_not_run_in_the_starting_agent_s_context(
        monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str | None] = []
    handle = Gateway.__call__

    async def spy(self: Gateway, scope: Any, receive: Any, send: Any) -> None:
        seen.append(AGENT_VAR.get())
        await handle(self, scope, receive, send)

    monkeypatch.setattr(Gateway, "__call__", spy)
    gateway = LocalGateway(Gateway(lambda: None))  # type: ignore[arg-type, return-value]

    async def agent() -> str:  # the first agent to read its endpoint starts the gateway
        AGENT_VAR.set("the first agent's")
        return gateway.url()

    url = await asyncio.get_running_loop().create_task(agent())
    try:
        async with httpx.AsyncClient() as client:
            answer = await client.get(f"{url}/models")  # no key: 401, after the spy saw it
    finally:
        await gateway.aclose()
    assert answer.status_code == 401 and seen == [None]
