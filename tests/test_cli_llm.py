"""CLI for the LLM layer: a workflow with an llm agent, usage, credits, llm status."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from omium.cli import app

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()


@pytest.fixture
def fake_url() -> Iterator[str]:
    proc = subprocess.Popen([sys.executable, "-m", "omium.testing.fake_server", "--port", "0"],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline().split()
    assert line[0] == "ready", line
    yield line[1]
    proc.terminate()
    proc.wait(10)


def omium(*args: object, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = runner.invoke(app, [str(a) for a in args], env=env)
    return result.exit_code, result.output


def test_letter_example_bills_the_local_tenant(fake_url: str, tmp_path: Path) -> None:
    cfg = tmp_path / "llm.yaml"
    cfg.write_text(yaml.safe_dump({"backends": [
        {"name": "local", "base_url": fake_url, "model": "smollm2"},
        {"name": "openai", "base_url": "http://127.0.0.1:9/v1", "model": "gpt-3.5-turbo",
         "kind": "hosted", "priority": 10}]}))
    env = {"OMIUM_LLM_CONFIG": str(cfg)}
    code, out = omium("run", ROOT / "examples/loan_approval/letter.yaml", "--json", env=env)
    result = json.loads(out.splitlines()[-1])
    assert code == 0 and result["usage"]["calls"] == 1
    assert result["usage"]["cost_usd"] == "0.001"
    code, out = omium("usage", "--json", env=env)
    [row] = json.loads(out)
    assert (row["tenant_id"], row["model"], row["calls"], row["credits"]) == (
        "local", "smollm2", 1, "0.1")
    code, out = omium("llm", "status", "--json", env=env)
    status = json.loads(out)
    reach = {b["name"]: b["reachable"] for b in status["backends"]}
    assert reach == {"local": True, "openai": False}
    assert status["figures"]["local_share"] == 1.0
    # $0.001 locally vs gpt-3.5-turbo for the same tokens: the saving can be negative
    assert status["figures"]["calls"] == 1


def test_credits_add_and_balance() -> None:
    assert omium("credits", "add", "acme", "10.25")[0] == 0
    code, out = omium("credits", "balance", "acme", "--json")
    assert json.loads(out) == {"tenant_id": "acme", "balance_credits": "10.25",
                               "limited": True, "overdraft_credits": "0"}
    code, out = omium("credits", "add", "acme", "ten")
    assert code == 2 and "not a number" in out
    code, out = omium("credits", "balance", "nobody")
    assert code == 2 and "no tenant 'nobody'" in out
