"""The REST service in-process for tests: httpx over ASGI with the app's lifespan running.

Nothing here runs a worker: an execution the API queued is driven to its end by
``MultiAgentExecutor.resume`` (what a worker does, minus the lease).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import FastAPI

from omium.api import Settings, create_app
from omium.engine.executor import MultiAgentExecutor
from omium.engine.result import ExecutionResult
from omium.store.base import Store

ADMIN = "admin-secret-for-tests"
ADMIN_H = {"Authorization": f"Bearer {ADMIN}"}
V1 = "/api/v1"
ECHO = "tests.agents_for_tests:echo"


@dataclass
class Api:
    app: FastAPI
    client: httpx.AsyncClient

    @property
    def store(self) -> Store:
        return self.app.state.store

    async def tenant(self, name: str) -> tuple[str, dict[str, str]]:
        r = await self.client.post(f"{V1}/tenants", json={"name": name}, headers=ADMIN_H)
        assert r.status_code == 201, r.text
        body = r.json()
        return body["tenant_id"], {"Authorization": f"Bearer {body['api_key']}"}

    async def submit(self, headers: dict[str, str], **body: Any) -> str:
        r = await self.client.post(f"{V1}/executions", json=body, headers=headers)
        assert r.status_code == 202, r.text
        assert r.json()["status"] == "queued"
        return str(r.json()["execution_id"])

    async def drive(self, tenant: str, execution_id: str) -> ExecutionResult:
        """Run a queued execution here, as a worker would."""
        executor = MultiAgentExecutor(self.store, tenant_id=tenant)
        return await executor.resume(execution_id, tenant_id=tenant)


@asynccontextmanager
async def serve(url: str, **settings: Any) -> AsyncIterator[Api]:
    app = create_app(Settings(database_url=url, admin_key=ADMIN, **settings))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            yield Api(app, client)


def agent(agent_id: str, fn: str = ECHO, **extra: Any) -> dict[str, Any]:
    return {"id": agent_id, "framework": "python", "definition": {"callable": fn}, **extra}


def sequential(name: str = "seq", n: int = 3, fn: str = ECHO, **extra: Any) -> dict[str, Any]:
    return {"name": name, "agents": [agent(f"a{i}", fn) for i in range(n)], **extra}


LOAN = {"name": "loan", "agents": [agent("kyc", input_schema={
    "type": "object", "required": ["applicant"],
    "properties": {"applicant": {"type": "object"}}})]}

VOTE = {"name": "vote", "execution_order": "parallel",
        "agents": [agent("yes", "tests.agents_for_tests:approve"),
                   agent("no", "tests.agents_for_tests:reject")],
        "consensus": {"strategy": "unanimous", "field": "decision"}}


def parse_sse(text: str) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for block in text.split("\n\n"):
        if not block.strip() or block.startswith(":"):
            continue
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        out.append((fields["event"], json.loads(fields["data"])))
    return out
