"""Schemathesis against a real ``omium serve`` (SQLite, in-process workers): every answer
must be a documented status with a body that matches the spec, and none a 5xx.

Bounded: a fixed seed and ``MAX_EXAMPLES`` cases per operation and phase (under a minute on
2 cores). Seeded executions (completed, failed, awaiting review) and workflows are offered to
the fuzzer as path and body values, so it reaches the code behind the 404s as well.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from tests._api_harness import VOTE, agent, sequential
from tests._serve_process import ADMIN, Served, omium_serve

pytest.importorskip("schemathesis")  # the `test` extra installs it; CI always has it

# A longer hunt: OMIUM_FUZZ_EXAMPLES=500 OMIUM_FUZZ_SEED=$RANDOM pytest tests/test_openapi_fuzz.py
MAX_EXAMPLES = int(os.environ.get("OMIUM_FUZZ_EXAMPLES") or 40)
SEED = os.environ.get("OMIUM_FUZZ_SEED") or "7"
RUN_TIMEOUT_S = 300
# Server errors and answers the spec does not describe; not the fuzzer's opinions about
# which inputs should have been accepted (OMIUM_FUZZ_CHECKS=all to see those too: it flags
# made-up cursors and workflows answered 422, which the spec cannot rule out beforehand).
CHECKS = os.environ.get("OMIUM_FUZZ_CHECKS") or (
    "not_a_server_error,status_code_conformance,content_type_conformance,"
    "response_headers_conformance,response_schema_conformance")
FINAL = {"completed", "failed", "awaiting_review", "cancelled"}


async def _seed(served: Served) -> dict[str, list[str]]:
    """Workflows and executions that exist, each in a state a route acts on."""
    headers = {"Authorization": f"Bearer {served.key}"}
    api = f"{served.base}/api/v1"
    workflows = [sequential("fuzz_seq", n=3), VOTE,
                 {"name": "fuzz_boom", "agents": [
                     agent("boom", "tests.agents_for_tests:boom", retry={"max_attempts": 1})]}]
    ids: dict[str, list[str]] = {"workflows": [], "executions": []}
    async with aiohttp.ClientSession(headers=headers) as http:
        for wf in workflows:
            async with http.post(f"{api}/workflows", json=wf) as r:
                assert r.status == 201, await r.text()
                ids["workflows"].append((await r.json())["id"])
            async with http.post(f"{api}/executions",
                                 json={"workflow_id": ids["workflows"][-1]}) as r:
                assert r.status == 202, await r.text()
                ids["executions"].append((await r.json())["execution_id"])
        for execution_id in ids["executions"]:  # the in-process workers run them
            for _ in range(300):
                async with http.get(f"{api}/executions/{execution_id}") as r:
                    if (await r.json())["status"] in FINAL:
                        break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError(f"seeded execution {execution_id} never finished")
    return ids


def _config(path: Path, ids: dict[str, list[str]]) -> Path:
    # TOML strings and JSON strings agree for these plain ids.
    lines = [f"[dictionaries.{name}]\nvalues = {json.dumps(values)}\n"
             for name, values in ids.items()]
    lines.append("[parameters]")
    for key, name in (("path.execution_id", "executions"), ("path.workflow_id", "workflows"),
                      ("body.workflow_id", "workflows")):
        lines.append(f'"{key}" = {{ dictionary = "{name}", probability = 0.7 }}')
    path.write_text("\n".join(lines) + "\n")
    return path


def _schemathesis(served: Served, config: Path, key: str, *extra: str) -> None:
    # One worker: with two, schemathesis parses code (ast) in two threads at once, which trips
    # CPython 3.11's "AST constructor recursion depth mismatch" now and then (a runtime error in
    # the fuzzer, not an answer of the server).
    cmd = [sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "run",
           f"{served.base}/openapi.json", "--checks", CHECKS, "--max-examples",
           str(MAX_EXAMPLES), "--seed", SEED, "--workers", "1", "--request-timeout", "30",
           "--suppress-health-check", "all", "--no-color", "--generation-database", "none",
           "--header", f"Authorization: Bearer {key}", *extra]
    done = subprocess.run(cmd, cwd=config.parent, capture_output=True, text=True,
                          timeout=RUN_TIMEOUT_S)
    print(done.stdout[-6000:])  # shown with -s, or on a failure elsewhere in the test
    assert done.returncode == 0, (done.stdout[-15000:] + done.stderr[-3000:])


async def test_the_api_answers_as_its_openapi_spec_says(tmp_path: Path) -> None:
    async with omium_serve(tmp_path / "fuzz.db") as served:
        config = _config(tmp_path / "schemathesis.toml", await _seed(served))
        # A tenant's key on every route (admin routes answer it 403, as documented)...
        await asyncio.to_thread(_schemathesis, served, config, served.key)
        # ...and an admin key where it is the one that works.
        await asyncio.to_thread(_schemathesis, served, config, ADMIN,
                                "--include-path-regex", "^/(api/v1/tenants|metrics)")
        assert served.process.poll() is None, "omium serve died under the fuzzer"
