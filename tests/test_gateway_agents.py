"""Agents' own LLM calls through the gateway: ``ctx.llm_base_url``, ``ctx.llm_api_key`` and
``ctx.llm_model`` with the official ``openai`` client, in a CLI run (the executor's in-process
gateway on loopback) and in the service (in-process workers calling ``omium serve``'s
``/v1``), billed to the execution and agent to the nano-dollar, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml
from openai import AsyncOpenAI

from omium import MultiAgentExecutor
from omium.agents.base import Agent, AgentContext
from omium.api import Settings, create_app
from omium.billing import Ledger
from omium.engine.attempts import run_with_retries
from omium.engine.endpoints import AgentEndpoints, start_run
from omium.llm import LLMRouter, load_config
from omium.store import open_store
from omium.store.base import Store
from omium.testing.fake_server import FakeOpenAIServer
from omium.workflow.model import AgentSpec
from tests._cli_process import omium_cli
from tests._gateway_util import (
    LOCAL_CALL_NANO,
    bound_socket,
    hosted_nano,
    served,
    write_llm_config,
)
from tests._processes import ROOT, omium
from tests._serve_process import omium_serve

AGENTS = "tests.gateway_agents"


def py(agent_id: str, fn: str, **extra: Any) -> dict[str, Any]:
    return {"id": agent_id, "framework": "python",
            "definition": {"callable": f"{AGENTS}:{fn}"}, **extra}


@pytest.fixture
async def servers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                  ) -> AsyncIterator[tuple[FakeOpenAIServer, FakeOpenAIServer]]:
    async with FakeOpenAIServer(model="smollm2") as local, \
            FakeOpenAIServer(model="gpt-3.5-turbo") as hosted:
        monkeypatch.setenv("OMIUM_LLM_CONFIG", str(write_llm_config(
            tmp_path / "omium-llm.yaml", local, hosted)))
        yield local, hosted


async def test_python_agents_in_a_cli_run_bill_their_calls_to_the_execution_and_agent(
        store: Store, servers: tuple[FakeOpenAIServer, FakeOpenAIServer]) -> None:
    local, _ = servers
    workflow = {"name": "own_clients", "execution_order": "dag",  # all at once
                "inputs": {"prompt": "assess the applicant #usage=120/30"},
                "agents": [py("sync_agent", "ask_sync"), py("async_agent", "ask_async"),
                           py("quiet", "no_llm")]}
    execution_id = uuid.uuid4().hex
    async with MultiAgentExecutor(store) as ex:
        result = await ex.execute(execution_id, workflow)
        endpoints = ex._endpoints
        assert endpoints is not None and endpoints.started
        url = endpoints.endpoint(AgentContext(execution_id, "x", 1)).base_url
    assert result.status == "completed", result.error
    assert result.results["sync_agent"]["text"] == "echo: assess the applicant"
    assert result.results["sync_agent"]["model"] == "smollm2"  # the first configured model
    assert result.results["async_agent"]["text"] == "echo: assess the applicant"
    records = sorted(await store.usage_records(execution_id=execution_id),
                     key=lambda r: r.agent_id or "")
    assert [(r.agent_id, r.tenant_id, r.backend, r.prompt_tokens, r.completion_tokens,
             r.cost_nano, r.estimated) for r in records] == [
        ("async_agent", "local", "local", 120, 30, LOCAL_CALL_NANO, False),
        ("sync_agent", "local", "local", 120, 30, LOCAL_CALL_NANO, False)]
    assert local.count == 2
    # Stopped with the executor.
    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient() as http:
            await http.get(f"{url}/models")


async def test_nothing_is_started_for_agents_that_never_ask(
        sqlite_store: Store, servers: tuple[FakeOpenAIServer, FakeOpenAIServer]) -> None:
    async with MultiAgentExecutor(sqlite_store) as ex:
        result = await ex.execute("quiet-1", {"name": "quiet", "agents": [
            py("a", "no_llm"), py("b", "no_llm")]})
        assert result.status == "completed"
        assert ex._endpoints is not None and not ex._endpoints.started
        assert ex._router is None  # no router built either


async def test_a_cli_token_bills_only_its_execution_and_agent(
        sqlite_store: Store, servers: tuple[FakeOpenAIServer, FakeOpenAIServer]) -> None:
    _, hosted = servers
    cfg = load_config()
    router = LLMRouter(cfg, ledger=Ledger(sqlite_store))
    async with MultiAgentExecutor(sqlite_store, router=router) as ex:
        result = await ex.execute("leak-1", {"name": "leak", "agents": [
            py("leaker", "leak_key")]})
        got = result.results["leaker"]
        async with AsyncOpenAI(base_url=got["base_url"], api_key=got["api_key"],
                               max_retries=0) as client:
            await client.chat.completions.create(model="gpt-3.5-turbo", messages=[
                {"role": "user", "content": "later #usage=10/20"}])
        async with AsyncOpenAI(base_url=got["base_url"], api_key="om_guess",
                               max_retries=0) as client:
            with pytest.raises(openai.AuthenticationError):
                await client.chat.completions.create(model="smollm2", messages=[
                    {"role": "user", "content": "x"}])
    await router.aclose()
    [record] = await sqlite_store.usage_records(execution_id="leak-1")
    assert (record.agent_id, record.prompt_tokens, record.completion_tokens,
            record.cost_nano) == ("leaker", 10, 20, hosted_nano(10, 20))
    assert got["api_key"] not in repr(AgentContext("e", "a", 1, llm_api_key=got["api_key"]))
    assert hosted.count == 1


class _Reads(Agent):
    framework = "reads"

    async def run(self, inputs: Any, ctx: AgentContext) -> Any:
        return {"model": ctx.llm_model, "url": ctx.llm_base_url}


async def test_llm_model_is_the_definitions_model_else_the_first_configured(
        sqlite_store: Store, servers: tuple[FakeOpenAIServer, FakeOpenAIServer]) -> None:
    router = LLMRouter(load_config(), ledger=Ledger(sqlite_store))
    endpoints = AgentEndpoints(router=lambda: router)

    async def model_of(definition: dict[str, Any]) -> Any:
        spec = AgentSpec(id="a", framework="reads", definition=definition)

        async def failed(*_: Any) -> None:
            raise AssertionError("no attempt should fail")

        got = await start_run(endpoints, run_with_retries(
            _Reads(spec), spec, {}, execution_id="e", agent_id="a", tenant_id="local",
            workflow_name="w", on_failed_attempt=failed))
        return got.output  # type: ignore[union-attr]

    named = await model_of({"model": "gpt-3.5-turbo"})
    default = await model_of({})
    await endpoints.aclose()
    await router.aclose()
    assert named["model"] == "gpt-3.5-turbo" and default["model"] == "smollm2"
    assert named["url"].startswith("http://127.0.0.1:") and named["url"].endswith("/v1")


async def test_omium_run_then_executions_show_lists_the_agents_llm_usage(
        tmp_path: Path, servers: tuple[FakeOpenAIServer, FakeOpenAIServer]) -> None:
    wf = tmp_path / "wf.yaml"
    wf.write_text(yaml.safe_dump({"name": "cli_own_client", "inputs": {
        "prompt": "from the cli #usage=33/44"}, "agents": [py("writer", "ask_sync")]}))
    db = f"sqlite:///{tmp_path}/cli.db"
    ran = await asyncio.to_thread(omium_cli, "run", wf, "--json", "--execution-id", "cli-1",
                                  "--db", db)
    assert ran.code == 0, ran.text
    # The run's own summary counts the agent's calls through the gateway (no llm agent in it).
    assert json.loads(ran.out)["usage"] == {"calls": 1, "prompt_tokens": 33,
                                             "completion_tokens": 44, "cost_usd": "0.001"}
    again = await asyncio.to_thread(omium_cli, "run", wf, "--execution-id", "cli-2", "--db", db)
    assert "LLM: 1 call(s), 33 prompt + 44 completion tokens, $0.001" in again.out, again.text
    shown = await asyncio.to_thread(omium_cli, "executions", "show", "cli-1", "--json",
                                    "--db", db)
    [usage] = json.loads(shown.out)["usage"]
    assert (usage["agent_id"], usage["prompt_tokens"], usage["completion_tokens"],
            usage["cost_nano"]) == ("writer", 33, 44, LOCAL_CALL_NANO)
    text = await asyncio.to_thread(omium_cli, "executions", "show", "cli-1", "--db", db)
    assert "LLM call by writer: local/smollm2 (local), 33 + 44 tokens, $0.001" in text.out


async def test_service_workers_agents_call_the_serve_gateway_with_execution_tokens(
        database_url: str, servers: tuple[FakeOpenAIServer, FakeOpenAIServer]) -> None:
    sock = bound_socket()
    port = sock.getsockname()[1]
    app = create_app(Settings(database_url=database_url, admin_key="admin-" * 6,
                              worker_concurrency=4, gateway_secret="k" * 40,
                              gateway_url=f"http://127.0.0.1:{port}/v1"))
    async with served(app, sock) as url, httpx.AsyncClient(base_url=url) as http:
        made = await http.post("/api/v1/tenants", json={"name": "acme"},
                               headers={"Authorization": f"Bearer {'admin-' * 6}"})
        key = made.json()["api_key"]
        await Ledger(app.state.store).add_credits("acme", 50)
        r = await http.post("/api/v1/executions", headers={"Authorization": f"Bearer {key}"},
                            json={"workflow": {"name": "svc", "agents": [
                                py("analyst", "ask_async")]},
                                "inputs": {"prompt": "in the service #usage=500/70"}})
        execution_id = r.json()["execution_id"]
        for _ in range(500):
            detail = (await http.get(f"/api/v1/executions/{execution_id}",
                                     headers={"Authorization": f"Bearer {key}"})).json()
            if detail["status"] not in ("queued", "running"):
                break
            await asyncio.sleep(0.02)
        assert detail["status"] == "completed", detail
        assert app.state.gateway_router is not None  # served by this serve's own /v1
        [record] = await app.state.store.usage_records(execution_id=execution_id)
    assert (record.tenant_id, record.agent_id, record.backend, record.prompt_tokens,
            record.completion_tokens, record.cost_nano) == (
        "acme", "analyst", "local", 500, 70, LOCAL_CALL_NANO)


async def test_a_real_omium_serve_with_two_processes_bills_agents_and_openai_clients(
        tmp_path: Path, servers: tuple[FakeOpenAIServer, FakeOpenAIServer]) -> None:
    """`omium serve --processes 2`: the workers of either process sign tokens the other
    accepts (one secret per serve), and agents reach the serve's own /v1."""
    db = tmp_path / "serve.db"
    async with omium_serve(db, "--processes", "2") as srv, \
            httpx.AsyncClient(base_url=srv.base) as http:
        async with AsyncOpenAI(base_url=f"{srv.base}/v1", api_key=srv.key,
                               max_retries=0) as client:
            reply = await client.chat.completions.create(model="smollm2", messages=[
                {"role": "user", "content": "direct #usage=8/9"}])
        assert reply.usage is not None and reply.usage.prompt_tokens == 8
        auth = {"Authorization": f"Bearer {srv.key}"}
        ids = []
        for i in range(8):
            r = await http.post("/api/v1/executions", headers=auth, json={
                "workflow": {"name": "svc", "agents": [py("analyst", "ask_async")]},
                "inputs": {"prompt": f"run {i} #usage=60/{i + 1}"}})
            assert r.status_code == 202, r.text
            ids.append(r.json()["execution_id"])
        for execution_id in ids:
            for _ in range(500):
                detail = (await http.get(f"/api/v1/executions/{execution_id}",
                                         headers=auth)).json()
                if detail["status"] not in ("queued", "running"):
                    break
                await asyncio.sleep(0.02)
            assert detail["status"] == "completed", detail
            # The URL `omium serve` gave its workers: its own /v1.
            assert detail["result"]["results"]["analyst"]["base_url"] == f"{srv.base}/v1"
    async with open_store(f"sqlite:///{db}") as store:
        records = {r.execution_id: r for r in await store.usage_records(tenant_id="local")}
    assert None in records  # the direct call, billed to the key's tenant
    for i, execution_id in enumerate(ids):
        r = records[execution_id]
        assert (r.agent_id, r.prompt_tokens, r.completion_tokens) == ("analyst", 60, i + 1)


async def test_an_omium_worker_elsewhere_calls_the_apis_gateway_with_the_shared_secret(
        tmp_path: Path, servers: tuple[FakeOpenAIServer, FakeOpenAIServer]) -> None:
    db = tmp_path / "split.db"
    secret = {"OMIUM_GATEWAY_SECRET": "shared-by-the-deployment-" + "x" * 16}
    async with omium_serve(db, "--no-workers", **secret) as srv:
        url = {"OMIUM_GATEWAY_URL": f"{srv.base}/v1"}
        refused = await asyncio.to_thread(omium_cli, "worker", "--db", f"sqlite:///{db}",
                                          env={**url, "OMIUM_GATEWAY_SECRET": None})
        assert refused.code == 2 and "OMIUM_GATEWAY_SECRET" in refused.err
        worker = omium("worker", "--db", f"sqlite:///{db}", env={
            **os.environ, **url, **secret, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            auth = {"Authorization": f"Bearer {srv.key}"}
            async with httpx.AsyncClient(base_url=srv.base) as http:
                r = await http.post("/api/v1/executions", headers=auth, json={
                    "workflow": {"name": "split", "agents": [py("remote", "ask_sync")]},
                    "inputs": {"prompt": "far away #usage=77/7"}})
                execution_id = r.json()["execution_id"]
                for _ in range(1000):
                    detail = (await http.get(f"/api/v1/executions/{execution_id}",
                                             headers=auth)).json()
                    if detail["status"] not in ("queued", "running"):
                        break
                    await asyncio.sleep(0.02)
            assert detail["status"] == "completed", detail
            # The API's gateway, not one of the worker's own.
            assert detail["result"]["results"]["remote"]["base_url"] == f"{srv.base}/v1"
        finally:
            worker.terminate()
            worker.wait(20)
    async with open_store(f"sqlite:///{db}") as store:
        [record] = await store.usage_records(execution_id=execution_id)
    assert (record.agent_id, record.prompt_tokens, record.completion_tokens) == (
        "remote", 77, 7)
