"""No code execution through a workflow definition: every road a tenant tried from a code
reference (``module:attr``) to a shell, a file read or the process's exit is a 422 naming the
agent and field, over HTTP against a real ``omium serve``, and nothing runs."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any, ClassVar

import httpx
import pytest

from omium.agents._imports import import_ref, resolve_ref
from omium.agents.base import Agent, AgentContext
from omium.agents.registry import _registered
from omium.api.workflow_cache import validate_definition
from omium.engine.graph import prepare
from omium.errors import WorkflowValidationError
from tests._api_harness import V1, Api
from tests._processes import ROOT, free_port, omium, wait_http

ALLOWED = "examples,tests"
AGENTS = "examples.loan_approval.agents"
MOD = "tests.reexports_for_tests"
OWN = f"{MOD}:own"

# (reference, what the 422 must say)
BYPASSES = [
    # the reported one: through modules an allowed module imports, to os.system
    (f"{AGENTS}:statistics.random._os.system", "without dots"),
    (f"{AGENTS}:__loader__.get_data", "without dots"),
    (f"{AGENTS}:__loader__", "private and dunder"),
    (f"{AGENTS}:__builtins__", "private and dunder"),
    (f"{AGENTS}:__import__", "private and dunder"),
    (f"{AGENTS}:kyc.__globals__", "without dots"),
    (f"{AGENTS}:kyc.__call__", "without dots"),
    ("builtins:exec", "not allowed over the API"),
    ("sys:exit", "not allowed over the API"),
    ("os:_exit", "starts with '_'"),
    ("os:system", "not allowed over the API"),
    ("examplesevil.agents:kyc", "not allowed over the API"),  # a prefix is not a package
    ("tests._api_harness:agent", "private modules"),  # real, public function; private module
    ("examples.__main__:run", "private modules"),
    # names an allowed module merely imports
    (f"{MOD}:system", "builtin_function_or_method object"),
    (f"{MOD}:os", "module object"),
    (f"{MOD}:mean", "defined in module 'statistics'"),
    (f"{MOD}:partial", "defined in module 'functools'"),
    (f"{AGENTS}:datetime", "defined in module 'datetime'"),
    (f"{AGENTS}:re", "module object"),
    # callables that are not a function or class of the module
    (f"{MOD}:shout", "partial object"),
    (f"{MOD}:length", "builtin_function_or_method object"),
    (f"{MOD}:bound", "method object"),
    (f"{MOD}:instance", "Own object"),
    (f"{MOD}:_private", "starts with '_'"),
    (f"{MOD}:Own.method", "without dots"),
    ("ex\u0430mples.loan_approval.agents:kyc", "not a Python identifier"),  # Cyrillic a
    (f"{AGENTS}:kyc ", "not a Python identifier"),
]


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """``omium serve`` with its workers, so a reference that slipped through would run."""
    folder = tmp_path_factory.mktemp("refs")
    db = f"sqlite:///{folder}/refs.db"
    env = {**os.environ, "OMIUM_DATABASE_URL": db, "OMIUM_ALLOWED_MODULES": ALLOWED}
    created = subprocess.run([sys.executable, "-m", "omium.cli", "tenants", "create", "mallory",
                              "--json"], cwd=ROOT, env=env, capture_output=True, text=True,
                             check=True)
    tenant = json.loads(created.stdout)
    port = free_port()
    with open(folder / "serve.log", "w") as log:
        proc = omium("serve", "--db", db, "--port", str(port), env=env, stderr=log)
    base = f"http://127.0.0.1:{port}"
    try:
        asyncio.run(wait_http(f"{base}/health"))
        headers = {"Authorization": f"Bearer {tenant['api_key']}"}
        with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
            yield {"client": client, "db": db, "tenant": tenant["tenant_id"],
                   "markers": folder / "markers"}
    finally:
        proc.terminate()
        proc.wait(20)


def _workflow(field: str, ref: str) -> dict[str, Any]:
    definition = {"callable": ref} if field == "callable" else {"callable": OWN, field: ref}
    return {"name": "evil", "agents": [{"id": "mallory", "definition": definition}]}


def _shell(service: dict[str, Any]) -> str:
    """Inputs that leave a marker file if any shell ever runs them."""
    service["markers"].mkdir(exist_ok=True)
    return f"touch {service['markers']}/ran"


@pytest.mark.parametrize("field", ["callable", "accept"])
@pytest.mark.parametrize(("ref", "reason"), BYPASSES)
def test_every_bypass_is_a_422_naming_the_agent_and_field(service: dict[str, Any], field: str,
                                                          ref: str, reason: str) -> None:
    client = service["client"]
    r = client.post(f"{V1}/executions", json={"workflow": _workflow(field, ref),
                                              "inputs": _shell(service)})
    assert r.status_code == 422, r.text
    [problem] = r.json()["detail"]
    assert problem["loc"] == f"agents[0] (mallory).definition.{field}"
    assert reason in problem["msg"], problem["msg"]
    assert [e for e in client.get(f"{V1}/executions").json()["items"]
            if e["workflow_name"] == "evil"] == []


def test_registering_a_workflow_checks_its_references(service: dict[str, Any]) -> None:
    r = service["client"].post(f"{V1}/workflows",
                               json=_workflow("callable", f"{AGENTS}:statistics.random._os.system"))
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == "agents[0] (mallory).definition.callable"
    names = [w["name"] for w in service["client"].get(f"{V1}/workflows").json()["items"]]
    assert "evil" not in names


def test_legitimate_references_still_run_and_no_bypass_ran(service: dict[str, Any]) -> None:
    client = service["client"]
    ids = []
    for ref in (OWN, f"{MOD}:own_async"):
        workflow = {"name": "fine", "agents": [{"id": "a", "definition": {"callable": ref}}]}
        r = client.post(f"{V1}/executions", json={"workflow": workflow, "inputs": {"x": 1}})
        assert r.status_code == 202, r.text
        ids.append(r.json()["execution_id"])
    for eid in ids:  # the service's workers pick it up: poll, there is no wall-clock bound
        for _ in range(600):
            body = client.get(f"{V1}/executions/{eid}").json()
            if body["status"] not in ("queued", "running"):
                break
            time.sleep(0.05)
        assert body["status"] == "completed", body
        assert body["result"]["output"] == {"own": {"x": 1}}
    names = {e["workflow_name"] for e in client.get(f"{V1}/executions").json()["items"]}
    assert names == {"fine"}
    assert not (service["markers"] / "ran").exists()


# -- the checker itself, in-process
@pytest.mark.parametrize("ref", [OWN, f"{MOD}:own_async", f"{MOD}:Own"])
def test_a_client_may_name_a_function_or_class_defined_in_an_allowed_module(ref: str) -> None:
    module, name = ref.split(":")
    assert resolve_ref(ref, allowed=("tests",)) is getattr(__import__(module, fromlist=[name]),
                                                           name)


@pytest.mark.parametrize(("ref", "reason"), [
    (f"{AGENTS}:statistics.random._os.system", "'_os' starts with '_'"),
    (f"{AGENTS}:statistics.mean", "passes through module 'statistics'"),
    (f"{AGENTS}:kyc.__globals__", "'__globals__' starts with '_'"),
    (f"{AGENTS}:__loader__.get_data", "'__loader__' starts with '_'"),
    ("examples.__main__:run", "a dunder name"),
    ("os:_exit", "'_exit' starts with '_'"),
])
def test_operator_definitions_never_follow_private_names_or_modules(ref: str,
                                                                    reason: str) -> None:
    """The CLI's (and a worker's) own rules: what the API refuses by allowlist may be the
    operator's code, but no road through dunders, private names or imported modules."""
    with pytest.raises(WorkflowValidationError) as info:
        prepare({"name": "w", "agents": [{"id": "a", "definition": {"callable": ref}}]})
    [problem] = info.value.problems
    assert problem.path == "agents[0] (a).definition.callable"
    assert reason in problem.reason


def test_operator_definitions_may_walk_a_class() -> None:
    from tests.reexports_for_tests import Own

    assert import_ref(f"{MOD}:Own.method") is Own.method


class GraphAgent(Agent):
    """A framework adapter to come: its code references live under other keys."""

    framework = "graphs-for-tests"
    reference_fields: ClassVar[tuple[str, ...]] = ("graph", "tools")

    async def run(self, inputs: Any, ctx: AgentContext) -> Any:
        return inputs


def test_every_reference_field_an_agent_kind_declares_is_checked(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(_registered, GraphAgent.framework, GraphAgent)
    defn = {"name": "w", "agents": [{"id": "g", "framework": GraphAgent.framework,
                                     "definition": {"graph": "os:system",
                                                    "tools": [OWN, f"{MOD}:system"]}}]}
    with pytest.raises(WorkflowValidationError) as info:
        validate_definition(defn)
    assert [p.path for p in info.value.problems] == [
        "agents[0] (g).definition.graph", "agents[0] (g).definition.tools[1]"]
    ok = {"name": "w", "agents": [{"id": "g", "framework": GraphAgent.framework,
                                   "definition": {"graph": OWN, "tools": [OWN]}}]}
    plan, _ = validate_definition(ok)
    assert plan.nodes["g"].agent is not None


async def test_a_reference_that_is_not_a_string_is_a_422(api: Api) -> None:
    _, headers = await api.tenant("t")
    defn = {"name": "w", "agents": [{"id": "a", "definition": {"callable": {"x": 1}}}]}
    r = await api.client.post(f"{V1}/executions", json={"workflow": defn}, headers=headers)
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == "agents[0] (a).definition.callable"
    assert "expected 'module:function'" in r.json()["detail"][0]["msg"]


async def test_a_stored_bypass_named_by_workflow_id_is_refused(any_api: Api) -> None:
    """A definition in the store that never passed today's check (stored before it, or by
    other means) is checked again when a client names it by id, and nothing is queued."""
    tenant, headers = await any_api.tenant("mallory")
    workflow_id = await any_api.store.put_workflow(
        "evil", _workflow("callable", f"{MOD}:system"), tenant)
    r = await any_api.client.post(f"{V1}/executions", headers=headers,
                                  json={"workflow_id": workflow_id, "inputs": "touch x"})
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == "agents[0] (mallory).definition.callable"
    assert await any_api.store.list_executions() == []
