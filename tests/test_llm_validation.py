"""An ``llm`` agent needs a backend that can serve it: refused as bad input where a workflow is
accepted (``omium validate``, ``omium run``, the API), the same everywhere; and a router with
no backends says so, never ``max()`` of nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml

from omium import MultiAgentExecutor, WorkflowValidationError, prepare
from omium.billing import Ledger
from omium.engine._llm import check_llm_backends
from omium.errors import NoLLMBackendError
from omium.llm import LLMConfig, LLMRouter, parse_config
from omium.store import open_store
from omium.store.base import Store
from omium.testing.fake_server import FakeOpenAIServer
from tests._api_harness import V1, Api, agent, serve
from tests._cli_process import ROOT, omium_cli

LETTER = ROOT / "examples" / "loan_approval" / "letter.yaml"
# No LLM config from the environment (cwd=tmp_path: no ./omium-llm.yaml either).
NO_LLM_ENV: dict[str, str | None] = {
    "OMIUM_LLM_CONFIG": None, "OMIUM_LLM_LOCAL_URL": None, "OMIUM_LLM_HOSTED_URL": None}
ENV_VARS = tuple(NO_LLM_ENV)
HOW_TO = ("omium-llm.yaml", "OMIUM_LLM_CONFIG", "omium llm serve")


def writer(agent_id: str = "writer", **definition: object) -> dict:
    return {"id": agent_id, "framework": "llm",
            "definition": {"prompt": "Write to {{ name }}", **definition}}


def llm_workflow(*agents: dict) -> dict:
    return {"name": "letters", "inputs": {"name": "Ada"}, "agents": list(agents or [writer()])}


def backend_file(tmp_path: Path, base_url: str = "http://127.0.0.1:9/v1",
                 model: str = "smollm2") -> Path:
    path = tmp_path / "backends.yaml"
    path.write_text(yaml.safe_dump({"backends": [
        {"name": "local", "base_url": base_url, "model": model}]}))
    return path


async def executions_in(db: str) -> list:
    async with open_store(db) as store:
        return await store.list_executions()


# -- the CLI, as a user runs it


def test_validate_and_run_refuse_an_llm_agent_without_a_backend(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/x.db"
    checked = omium_cli("validate", LETTER, cwd=tmp_path, env=NO_LLM_ENV)
    ran = omium_cli("run", LETTER, "--db", db, cwd=tmp_path, env=NO_LLM_ENV)
    for done in (checked, ran):
        assert done.code == 2, done.text
        text = " ".join(done.err.split())  # the console wraps long lines
        assert "agents[1] (letter).framework: an llm agent needs an LLM backend" in text
        for how in HOW_TO:
            assert how in text
        assert "max()" not in done.text and "valid:" not in done.out
    assert asyncio.run(executions_in(db)) == []  # nothing was created


def test_a_model_no_backend_serves_is_refused_and_one_it_serves_is_valid(
        tmp_path: Path) -> None:
    env = {**NO_LLM_ENV, "OMIUM_LLM_CONFIG": str(backend_file(tmp_path))}
    db = f"sqlite:///{tmp_path}/x.db"
    unserved = tmp_path / "unserved.yaml"
    unserved.write_text(yaml.safe_dump(llm_workflow(writer(model="gpt-9"))))
    for args in (("validate", unserved), ("run", unserved, "--db", db)):
        done = omium_cli(*args, cwd=tmp_path, env=env)
        assert done.code == 2, done.text
        text = " ".join(done.err.split())
        assert ("agents[0] (writer).definition.model: no configured LLM backend serves model "
                "'gpt-9' (configured: local (smollm2))") in text
    assert asyncio.run(executions_in(db)) == []
    for model in ("smollm2", "local"):  # a backend's model, or its name
        served = tmp_path / f"{model}.yaml"
        served.write_text(yaml.safe_dump(llm_workflow(writer(model=model))))
        done = omium_cli("validate", served, cwd=tmp_path, env=env)
        assert done.code == 0 and "valid: letters" in done.out, done.text


def test_a_broken_llm_config_is_bad_input_naming_the_agent(tmp_path: Path) -> None:
    broken = tmp_path / "omium-llm.yaml"  # found in the working directory
    broken.write_text("backends: [{name: local}]\n")
    done = omium_cli("validate", LETTER, cwd=tmp_path, env=NO_LLM_ENV)
    assert done.code == 2, done.text
    text = " ".join(done.err.split())
    assert "agents[1] (letter).framework: no usable LLM backend: the LLM config is invalid" in text
    assert "base_url" in text


def test_python_only_workflows_never_read_the_llm_config(tmp_path: Path) -> None:
    (tmp_path / "omium-llm.yaml").write_text("not: [a, config\n")
    done = omium_cli("validate", ROOT / "examples" / "loan_approval" / "workflow.yaml",
                     cwd=tmp_path, env=NO_LLM_ENV)
    assert done.code == 0 and "valid:" in done.out, done.text


@pytest.fixture
async def server() -> AsyncIterator[FakeOpenAIServer]:
    async with FakeOpenAIServer(model="smollm2") as s:
        yield s


async def test_with_a_backend_validate_says_valid_and_run_completes(
        tmp_path: Path, server: FakeOpenAIServer) -> None:
    env = {**NO_LLM_ENV, "OMIUM_LLM_CONFIG": str(backend_file(tmp_path, server.base_url))}
    db = f"sqlite:///{tmp_path}/x.db"
    checked = await asyncio.to_thread(omium_cli, "validate", LETTER, cwd=tmp_path, env=env)
    assert checked.code == 0, checked.text
    assert "valid: loan_letter (sequential, 2 agents)" in checked.out
    # The same environment runs it: validate and run agree (the fake server answers here).
    ran = await asyncio.to_thread(omium_cli, "run", LETTER, "--db", db, "--json",
                                  cwd=tmp_path, env=env)
    assert ran.code == 0, ran.text
    assert server.count == 1
    [rec] = await executions_in(db)
    assert rec.status == "completed"


# -- the check itself, and the agents it covers


def test_the_check_covers_fallback_agents_and_takes_a_given_config() -> None:
    wf = {"name": "fb", "agents": [
        {**agent("main", "tests.agents_for_tests:echo"), "fallback": "backup"},
        writer("backup", model="big")]}
    plan = prepare(wf)  # prepare alone does not look at the LLM config
    with pytest.raises(WorkflowValidationError) as err:
        check_llm_backends(plan, LLMConfig())
    assert [p.path for p in err.value.problems] == ["agents[1] (backup).framework"]
    cfg = parse_config({"backends": [{"name": "b", "base_url": "http://x/v1", "model": "m"}]})
    with pytest.raises(WorkflowValidationError, match=r"agents\[1\] \(backup\)\.definition"
                                                      r"\.model: no configured LLM backend "
                                                      r"serves model 'big'"):
        check_llm_backends(plan, cfg)
    check_llm_backends(prepare({**wf, "agents": [wf["agents"][0], writer("backup")]}), cfg)
    with pytest.raises(WorkflowValidationError, match=r"definition\.model: must be"):
        prepare(llm_workflow(writer(model=5)))


# -- the API: 422 naming the agent, nothing stored


@pytest.fixture
async def api_without_llm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                          ) -> AsyncIterator[Api]:
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    async with serve(f"sqlite:///{tmp_path}/api.db") as a:
        yield a


async def test_api_refuses_an_llm_agent_without_a_backend(
        api_without_llm: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    api = api_without_llm
    _, h = await api.tenant("acme")
    for url, body in ((f"{V1}/workflows", llm_workflow()),
                      (f"{V1}/executions", {"workflow": llm_workflow()})):
        r = await api.client.post(url, json=body, headers=h)
        assert r.status_code == 422, r.text
        [problem] = r.json()["detail"]
        assert problem["loc"] == "agents[0] (writer).framework"
        assert all(how in problem["msg"] for how in HOW_TO)
    assert await api.store.list_executions() == []
    assert await api.store.list_workflows("acme") == []
    # The same definition is accepted once this process has a backend for it.
    monkeypatch.setenv("OMIUM_LLM_CONFIG", str(backend_file(tmp_path)))
    r = await api.client.post(f"{V1}/executions", json={"workflow": llm_workflow()}, headers=h)
    assert r.status_code == 202, r.text
    r = await api.client.post(f"{V1}/workflows", json=llm_workflow(writer(model="gpt-9")),
                              headers=h)
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == "agents[0] (writer).definition.model"


# -- the engine: a router with no backends


async def test_a_router_without_backends_raises_a_clear_error(sqlite_store: Store) -> None:
    for router in (LLMRouter(LLMConfig()), LLMRouter(LLMConfig(), ledger=Ledger(sqlite_store))):
        with pytest.raises(NoLLMBackendError, match="no LLM backend is configured") as err:
            await router.chat([{"role": "user", "content": "hi"}])
        assert all(how in str(err.value) for how in HOW_TO)
        await router.aclose()


async def test_an_executor_given_an_empty_router_fails_the_agent_clearly(
        sqlite_store: Store) -> None:
    router = LLMRouter(LLMConfig(), ledger=Ledger(sqlite_store))
    wf = llm_workflow({**writer(), "retry": {"max_attempts": 1}})
    async with MultiAgentExecutor(sqlite_store, router=router) as ex:
        result = await ex.execute("no-backend", wf)
    await router.aclose()
    assert (result.status, result.failed_agent, result.failure_type) == (
        "failed", "writer", "llm_error")
    assert "NoLLMBackendError: no LLM backend is configured" in (result.error or "")
    assert "max()" not in (result.error or "")
