"""The CLI as a user drives it: the loan example's outcomes, exit codes, review, inspection."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from omium.cli import app

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "loan_approval"
runner = CliRunner()


def omium(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


def run_json(*args: str) -> tuple[int, dict]:
    code, out = omium(*args, "--json")
    return code, json.loads(out.strip().splitlines()[-1])


@pytest.mark.parametrize(("applicant", "decision"), [
    ("approved", "approve"), ("rejected", "reject"), ("rejected_kyc", "reject")])
def test_loan_example_decisions(applicant: str, decision: str) -> None:
    code, result = run_json("run", EXAMPLE / "workflow.yaml", "--input",
                            EXAMPLE / "applicants" / f"{applicant}.json")
    assert (code, result["status"], result["decision"]) == (0, "completed", decision)
    assert list(result["results"]) == ["kyc_agent", "fraud_agent", "credit_agent"]


def test_main_job_runs_on_default_inputs_and_shows_a_summary() -> None:
    code, out = omium("run", EXAMPLE / "workflow.yaml", "--execution-id", "main-job")
    assert code == 0
    for text in ("kyc_agent", "fraud_agent", "credit_agent", "status: completed",
                 "decision: approve"):
        assert text in out
    code, shown = omium("executions", "show", "main-job")
    assert code == 0 and "handoffs" in shown and "kyc_agent" in shown


def test_split_vote_waits_for_review_then_completes() -> None:
    code, result = run_json("run", EXAMPLE / "parallel.yaml", "--execution-id", "split")
    assert (code, result["status"]) == (3, "awaiting_review")
    assert result["consensus"]["dissenters"] == ["conservative_reviewer"]
    code, listed = omium("executions", "list", "--status", "awaiting_review", "--json")
    assert [e["id"] for e in json.loads(listed)] == ["split"]
    # a split vote is decided with approve or reject: anything else changes nothing
    code, out = omium("review", "split", "--decision", "maybe")
    assert code == 2 and "decision: a split vote is decided with approve or reject, got " \
        "'maybe'" in out, out
    code, reviewed = run_json("review", "split", "--decision", "approve")
    assert (code, reviewed["status"], reviewed["decision"]) == (0, "completed", "approve")
    code, again = omium("review", "split", "--decision", "approve")
    assert code == 2 and "not awaiting_review" in again


def test_bad_input_exits_2_and_writes_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nagents:\n  - id: a\n    framework: smolagents\n")
    code, out = omium("run", bad)
    assert code == 2 and "agents[0] (a).framework" in out and "smolagents" in out
    code, out = omium("run", EXAMPLE / "workflow.yaml", "--input", '{"applicant": 1}')
    assert code == 2 and "inputs.applicant" in out
    code, out = omium("run", EXAMPLE / "workflow.yaml", "--input", "{not json")
    assert code == 2 and "neither a file nor valid JSON" in out
    code, out = omium("review", "nope", "--decision", "approve")
    assert code == 2 and "no execution with id 'nope'" in out
    code, listed = omium("executions", "list", "--json")
    assert json.loads(listed) == []


def test_failed_run_exits_1_and_names_the_agent(tmp_path: Path) -> None:
    wf = tmp_path / "wf.json"
    wf.write_text(json.dumps({"name": "broken", "agents": [
        {"id": "a", "definition": {"callable": "tests.agents_for_tests:boom"},
         "retry": {"max_attempts": 1}}]}))
    code, result = run_json("run", wf)
    assert (code, result["status"], result["failed_agent"]) == (1, "failed", "a")
    code, out = omium("validate", wf)
    assert code == 0 and "valid" in out


def test_tenants_and_keys() -> None:
    code, out = omium("tenants", "create", "Acme Corp", "--json")
    created = json.loads(out)
    assert code == 0 and created["api_key"].startswith("om_")
    tenant = created["tenant_id"]
    code, out = omium("keys", "create", tenant, "--json")
    assert code == 0 and json.loads(out)["api_key"] != created["api_key"]
    code, out = omium("keys", "create", "nobody")
    assert code == 2 and "no tenant 'nobody'" in out
    code, out = omium("keys", "create")
    assert code == 2 and "--admin" in out
    code, out = omium("keys", "create", "--admin", "--json")
    assert code == 0 and json.loads(out)["admin"] is True


# Run in a fresh interpreter (this one has the API loaded): what the commands imported.
_TENANT_COMMANDS = """
import sys
from omium.cli import app
for args in (["tenants", "create", "acme"], ["keys", "create", "acme"]):
    try:
        app([*args, "--db", sys.argv[1], "--json"])
    except SystemExit as done:
        assert done.code == 0, (args, done.code)
print(sorted(m for m in sys.modules if m.split(".")[0] == "fastapi" or m.startswith("omium.api")))
"""


def test_tenant_and_key_commands_do_not_load_the_api(tmp_path: Path) -> None:
    # Tenants and keys live in omium.engine.tenants: no FastAPI start-up cost for the CLI.
    done = subprocess.run([sys.executable, "-c", _TENANT_COMMANDS, f"sqlite:///{tmp_path}/t.db"],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert json.loads(lines[0])["tenant_id"] == "acme" and json.loads(lines[1])["api_key"]
    assert lines[-1] == "[]"


def test_cancel_an_execution_awaiting_review() -> None:
    code, _ = run_json("run", EXAMPLE / "parallel.yaml", "--execution-id", "to-cancel")
    assert code == 3
    code, out = omium("executions", "cancel", "to-cancel", "--json")
    assert code == 0 and json.loads(out)["status"] == "cancelled"
    code, out = omium("executions", "cancel", "to-cancel")
    assert code == 2 and "is cancelled" in out
    code, out = omium("review", "to-cancel", "--decision", "approve")
    assert code == 2 and "not awaiting_review" in out
