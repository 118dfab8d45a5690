"""No input can freeze the process, and JSON at every door is strict (issue 7, part C).

Schemas are judged by one engine (jsonschema-rs, linear-time regexes); definitions are capped;
NaN/Infinity and values nested deeper than 64 levels are refused where they come in: a 422
over HTTP, exit 2 on the CLI, an agent's validation_error for an output.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from omium.coordination.handoff import HandoffProtocol
from omium.engine.executor import MultiAgentExecutor
from omium.errors import HandoffValidationError, InputValidationError
from omium.jsonsafe import MAX_JSON_DEPTH, MAX_PATTERN_CHARS, MAX_SCHEMA_BYTES
from omium.schemas import first_error
from tests._api_harness import ECHO, V1, Api, agent
from tests._processes import ROOT
from tests._serve_process import omium_serve

REDOS = {"type": "object", "properties": {"name": {"type": "string", "pattern": "^(a+)+$"}}}
EVIL = "a" * 30 + "!"  # Python's backtracking re needs minutes for this one
JSON_H = {"Content-Type": "application/json"}


def nested(levels: int, leaf: Any = 1) -> Any:
    """``{"a": {"a": ... leaf}}`` with ``levels`` objects."""
    value = leaf
    for _ in range(levels):
        value = {"a": value}
    return value


MARK = "<constant>"


def with_constant(value: Any, constant: str) -> str:
    """``value`` as JSON text with every MARK string replaced by the bare ``constant``
    (``NaN``, ``Infinity``): text json.dumps refuses to write, as a careless client might."""
    return json.dumps(value).replace(json.dumps(MARK), constant)


def redos_workflow(name: str) -> dict[str, Any]:
    return {"name": name, "agents": [agent("kyc", input_schema=REDOS)]}


def handoff_workflow(name: str) -> dict[str, Any]:
    """echo hands {"seen": inputs} to a receiver whose input schema has the ReDoS pattern."""
    receiver_schema = {"type": "object", "properties": {"seen": REDOS}}
    return {"name": name, "agents": [
        agent("sender"), agent("receiver", input_schema=receiver_schema,
                               retry={"max_attempts": 1})]}


# -- over HTTP against a real `omium serve`


async def _timed_get(session: aiohttp.ClientSession, url: str) -> float:
    started = time.perf_counter()
    async with session.get(url) as r:
        assert r.status == 200
        await r.read()
    return time.perf_counter() - started


async def _submit(session: aiohttp.ClientSession, base: str, body: dict[str, Any]
                  ) -> tuple[int, Any, float]:
    started = time.perf_counter()
    async with session.post(f"{base}{V1}/executions", json=body) as r:
        return r.status, await r.json(), time.perf_counter() - started


async def test_redos_pattern_cannot_stall_the_server(tmp_path: Path) -> None:
    async with omium_serve(tmp_path / "o.db") as srv, aiohttp.ClientSession(
            headers={"Authorization": f"Bearer {srv.key}"}) as session:
        async with session.post(f"{srv.base}{V1}/workflows",
                                json=redos_workflow("redos")) as r:
            assert r.status == 201, await r.text()
            workflow_id = (await r.json())["id"]
        await _timed_get(session, f"{srv.base}/health")  # warm: the connection pool
        body = {"workflow_id": workflow_id, "inputs": {"name": EVIL}}
        submissions = [asyncio.ensure_future(_submit(session, srv.base, body))
                       for _ in range(20)]
        await asyncio.sleep(0)  # the submissions are on their way before /health is asked
        health = await _timed_get(session, f"{srv.base}/health")
        answers = await asyncio.gather(*submissions)
        assert health < 0.1, f"/health took {health * 1000:.0f} ms during the submissions"
        for status, detail, took in answers:
            assert status == 422
            [problem] = detail["detail"]
            assert problem["loc"] == "inputs.name" and "does not match" in problem["msg"]
            assert took < 2, f"a rejection took {took:.1f} s"


async def test_redos_pattern_in_a_worker_handoff_fails_fast(tmp_path: Path) -> None:
    async with omium_serve(tmp_path / "o.db") as srv, aiohttp.ClientSession(
            headers={"Authorization": f"Bearer {srv.key}"}) as session:
        body = {"workflow": handoff_workflow("handoff"), "inputs": {"name": EVIL}}
        status, created, _ = await _submit(session, srv.base, body)
        assert status == 202, created
        url = f"{srv.base}{V1}/executions/{created['execution_id']}"
        for _ in range(200):  # the in-process worker runs it: 20 s at most
            assert await _timed_get(session, f"{srv.base}/health") < 0.1
            async with session.get(url) as r:
                detail = await r.json()
            if detail["status"] not in ("queued", "running"):
                break
            await asyncio.sleep(0.1)
        assert detail["status"] == "failed"
        failure = detail["failure"]
        assert (failure["failed_agent"], failure["failure_type"]) == (
            "receiver", "validation_error")
        assert "$.seen.name" in failure["error"] and "does not match" in failure["error"]


# -- one authority: "^[a-z]+$" refuses "abc\n" in every place a schema is applied

LOWER = {"type": "string", "pattern": "^[a-z]+$"}


async def test_pattern_verdicts_agree_everywhere(sqlite_store: Any) -> None:
    assert first_error(LOWER, "abc") is None
    err = first_error(LOWER, "abc\n")
    assert err is not None and "does not match" in err.message
    with pytest.raises(HandoffValidationError):
        await HandoffProtocol().initiate_handoff("h", "a", ["b"], "abc\n", LOWER)
    executor = MultiAgentExecutor(sqlite_store)
    schema = {"type": "object", "properties": {"name": LOWER}}
    wf = {"name": "lower", "agents": [agent("a", input_schema=schema)]}
    with pytest.raises(InputValidationError, match=r"inputs\.name"):
        await executor.execute("e-in", wf, {"name": "abc\n"})
    # An output: echo's {"seen": ...} against an output_schema with the same pattern.
    out_schema = {"type": "object", "properties": {"seen": {"properties": {"name": LOWER}}}}
    wf = {"name": "lower-out", "agents": [agent("a", output_schema=out_schema,
                                               retry={"max_attempts": 1})]}
    result = await executor.execute("e-out", wf, {"name": "abc\n"})
    assert (result.status, result.failure_type) == ("failed", "validation_error")
    assert (await executor.execute("e-ok", wf, {"name": "abc"})).status == "completed"


# -- caps on what a definition may ask for


async def _register(api: Api, headers: dict[str, str], schema: Any) -> Any:
    wf = {"name": "capped", "agents": [agent("a", input_schema=schema)]}
    return await api.client.post(f"{V1}/workflows", json=wf, headers=headers)


@pytest.mark.parametrize(("schema", "loc", "reason"), [
    ({"type": "object", "properties": {f"p{i}": {"type": "string", "description": "x" * 100}
                                       for i in range(700)}},
     "agents[0] (a).input_schema", f"larger than {MAX_SCHEMA_BYTES} bytes"),
    (nested(33, {}), "agents[0] (a).input_schema", "nested deeper than 32 levels"),
    ({"properties": {"x": {"pattern": "a" * (MAX_PATTERN_CHARS + 1)}}},
     "agents[0] (a).input_schema/properties/x/pattern", "characters (at most 1000)"),
    ({"patternProperties": {"b" * (MAX_PATTERN_CHARS + 1): {}}},
     "agents[0] (a).input_schema/patternProperties", "characters (at most 1000)"),
    # The linear-time engine has no lookaround or backreferences: refused, not run by re.
    ({"properties": {"x": {"pattern": "^(?=a)a+$"}}},
     "agents[0] (a).input_schema/properties/x/pattern", "is not a \"regex\""),
    # Nothing is fetched: no network, no local files.
    ({"$ref": "file:///etc/hostname"}, "agents[0] (a).input_schema",
     "only references inside the schema"),
])
async def test_definition_caps_are_422s_naming_the_field(
        any_api: Api, schema: Any, loc: str, reason: str) -> None:
    _, h = await any_api.tenant("acme")
    r = await _register(any_api, h, schema)
    assert r.status_code == 422, r.text
    [problem] = r.json()["detail"]
    assert problem["loc"] == loc and reason in problem["msg"], problem


async def test_a_schema_within_the_caps_is_accepted(any_api: Api) -> None:
    _, h = await any_api.tenant("acme")
    schema = {"properties": {"x": {"pattern": "a" * MAX_PATTERN_CHARS}}, **nested(30, {})}
    assert (await _register(any_api, h, schema)).status_code == 201


# -- nesting: one limit (64) at the boundary, never a RecursionError or a 500


@pytest.mark.parametrize("levels", [65, 300, 900])
async def test_deep_inputs_are_refused(any_api: Api, levels: int) -> None:
    _, h = await any_api.tenant("acme")
    wf = {"name": "echo", "agents": [agent("a", ECHO)]}
    workflow_id = (await any_api.client.post(f"{V1}/workflows", json=wf, headers=h)).json()["id"]
    deep = json.dumps(nested(levels))
    for body in (f'{{"workflow_id": "{workflow_id}", "inputs": {deep}}}',
                 f'{{"workflow": {json.dumps(wf)}, "inputs": {deep}}}'):
        r = await any_api.client.post(f"{V1}/executions", content=body,
                                      headers={**h, **JSON_H})
        assert r.status_code == 422, r.text
        [problem] = r.json()["detail"]
        assert problem["loc"] == ["body", "inputs.a.a.a"]
        assert f"nested deeper than {MAX_JSON_DEPTH} levels" in problem["msg"]
    r = await any_api.client.get(f"{V1}/executions", headers=h)
    assert r.json()["items"] == []  # nothing was written


async def test_a_body_too_deep_for_the_json_decoder_is_a_422(any_api: Api) -> None:
    _, h = await any_api.tenant("acme")
    body = '{"inputs": ' + "[" * 5000 + "]" * 5000 + "}"  # json.loads: RecursionError
    r = await any_api.client.post(f"{V1}/executions", content=body, headers={**h, **JSON_H})
    assert r.status_code == 422
    assert r.json()["detail"][0]["msg"] == "nested deeper than 64 levels"


@pytest.mark.parametrize("levels", [65, 300, 900])
async def test_deep_definitions_are_refused(any_api: Api, levels: int) -> None:
    _, h = await any_api.tenant("acme")
    for wf in ({"name": "d", "agents": [agent("a", ECHO)], "default_inputs": nested(levels)},
               {"name": "d", "agents": [agent("a", ECHO, input_schema=nested(levels, {}))]}):
        r = await any_api.client.post(f"{V1}/workflows", content=json.dumps(wf),
                                      headers={**h, **JSON_H})
        assert r.status_code == 422, r.text
        assert "nested deeper than" in r.json()["detail"][0]["msg"]


async def test_inputs_nested_64_levels_are_taken_and_read_back(any_api: Api) -> None:
    _, h = await any_api.tenant("acme")
    wf = {"name": "echo", "agents": [agent("a", ECHO)]}
    ex = await any_api.submit(h, workflow=wf, inputs=nested(MAX_JSON_DEPTH))
    r = await any_api.client.get(f"{V1}/executions/{ex}", headers=h)
    assert r.status_code == 200 and r.json()["inputs"] == nested(MAX_JSON_DEPTH)


# -- NaN and Infinity


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
async def test_non_finite_numbers_in_inputs_are_refused(any_api: Api, constant: str) -> None:
    _, h = await any_api.tenant("acme")
    schema = {"type": "object", "properties": {"amount": {"minimum": 0, "maximum": 10}}}
    wf = {"name": "n", "agents": [agent("a", ECHO, input_schema=schema)]}
    body = with_constant({"workflow": wf, "inputs": {"amount": MARK}}, constant)
    r = await any_api.client.post(f"{V1}/executions", content=body, headers={**h, **JSON_H})
    assert r.status_code == 422, r.text
    assert r.json()["detail"] == [{"loc": ["body", "inputs.amount"], "type": "json_invalid",
                                   "msg": f"{constant} is not a JSON number (only finite "
                                          "numbers are)"}]


async def test_non_finite_numbers_in_a_definition_are_refused(any_api: Api) -> None:
    _, h = await any_api.tenant("acme")
    body = with_constant({"name": "n", "agents": [
        agent("a", ECHO, input_schema={"maximum": MARK})]}, "Infinity")
    r = await any_api.client.post(f"{V1}/workflows", content=body, headers={**h, **JSON_H})
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "agents[0].input_schema.maximum"]


async def test_a_nan_output_fails_the_agent_and_the_execution_stays_readable(
        any_api: Api) -> None:
    tenant, h = await any_api.tenant("acme")
    wf = {"name": "nan", "agents": [agent("a", "tests.agents_for_tests:not_a_number",
                                          retry={"max_attempts": 1})]}
    ex = await any_api.submit(h, workflow=wf, inputs={})
    result = await any_api.drive(tenant, ex)
    assert (result.status, result.failure_type) == ("failed", "validation_error")
    assert (result.error or "").endswith(
        "output is not valid JSON at $.score: NaN is not a JSON number (only finite numbers are)")
    r = await any_api.client.get(f"{V1}/executions/{ex}", headers=h)
    assert r.status_code == 200
    assert r.json()["failure"]["failure_type"] == "validation_error"
    assert "NaN" not in r.text.replace("NaN is not", "")  # nothing stored as the NaN token


# -- the CLI: exit 2 with a message, never a traceback


def _omium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "omium.cli", *args, "--db",
                           f"sqlite:///{tmp_path}/cli.db"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, env={**os.environ, "COLUMNS": "200"})


def test_cli_refuses_nan_and_deep_inputs(tmp_path: Path) -> None:
    wf = tmp_path / "wf.json"
    wf.write_text(json.dumps({"name": "cli", "agents": [agent("a", ECHO)]}))
    deep = tmp_path / "deep.yaml"
    deep.write_text(json.dumps(nested(900)))  # JSON is YAML
    for inputs, says in (('{"x": NaN}', "NaN is not valid JSON"),
                         ('{"x": -Infinity}', "-Infinity is not valid JSON"),
                         (json.dumps(nested(300)), "nested deeper than 64 levels"),
                         (str(deep), "nested deeper than 64 levels")):
        done = _omium(tmp_path, "run", str(wf), "--input", inputs)
        assert done.returncode == 2, done.stderr
        assert says in done.stderr and "Traceback" not in done.stderr + done.stdout


def test_cli_refuses_non_finite_numbers_in_workflow_files(tmp_path: Path) -> None:
    yml = tmp_path / "wf.yaml"
    yml.write_text(f"name: y\nagents:\n  - id: a\n    definition: {{callable: '{ECHO}'}}\n"
                   "    input_schema: {maximum: .inf}\n")
    js = tmp_path / "wf.json"
    js.write_text(with_constant({"name": "j", "agents": [
        agent("a", ECHO, input_schema={"minimum": MARK})]}, "NaN"))
    for path, says in ((yml, "agents[0].input_schema.maximum: Infinity is not a JSON number"),
                       (js, "NaN is not valid JSON")):
        done = _omium(tmp_path, "run", str(path))
        assert done.returncode == 2, done.stderr
        assert says in done.stderr and "Traceback" not in done.stderr + done.stdout
