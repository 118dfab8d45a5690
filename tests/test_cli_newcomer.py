"""The CLI as a newcomer meets it, through the real ``omium`` command: data printed
literally, cancel and Ctrl-C that really stop a run, orphaned runs shown and taken over, a
reused execution id, database and file errors as one line, ids never cut."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests._cli_process import ROOT, omium_cli

AGENTS = ["s1", "s2", "s3", "s4"]


def _workflow(tmp_path: Path, fn: str = "side_effect", name: str = "fx") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, "agents": [
        {"id": a, "definition": {"callable": f"tests.agents_for_tests:{fn}"},
         "retry": {"max_attempts": 1}} for a in AGENTS]}))
    return path


def _env(tmp_path: Path, step_s: float = 0.0) -> dict[str, str | None]:
    return {"OMIUM_DATABASE_URL": f"sqlite:///{tmp_path / 'omium.db'}",
            "OMIUM_TEST_EFFECTS": str(tmp_path / "fx.jsonl"), "OMIUM_TEST_STEP_S": str(step_s)}


def _started(tmp_path: Path) -> list[str]:
    path = tmp_path / "fx.jsonl"
    return [json.loads(x)[1] for x in path.read_text().splitlines()] if path.exists() else []


def _background_run(tmp_path: Path, exec_id: str, step_s: float) -> subprocess.Popen[str]:
    import os

    env = {**os.environ, "PYTHONPATH": str(ROOT), **_env(tmp_path, step_s)}
    proc = subprocess.Popen([sys.executable, "-m", "omium.cli", "run", str(_workflow(tmp_path)),
                             "--execution-id", exec_id], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    for _ in range(600):  # until the first agent has started
        if _started(tmp_path):
            return proc
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    proc.kill()
    raise AssertionError("the first agent never started")


def _status(tmp_path: Path, exec_id: str) -> dict:
    ran = omium_cli("executions", "show", exec_id, "--json", env=_env(tmp_path))
    assert ran.code == 0, ran.text
    return json.loads(ran.out)["execution"]


def test_error_text_with_brackets_is_printed_literally(tmp_path: Path) -> None:
    wf = _workflow(tmp_path, "bracketed_error")
    ran = omium_cli("run", wf, "--execution-id", "br[/x]", env=_env(tmp_path))
    assert ran.code == 1, ran.text
    assert "config [/etc/app.conf] missing; field [amount] must be positive" in ran.out
    assert "br[/x]" in ran.text
    assert _status(tmp_path, "br[/x]")["status"] == "failed"  # not left running
    shown = omium_cli("executions", "show", "br[/x]", env=_env(tmp_path))
    assert "[/etc/app.conf]" in shown.out and shown.code == 0


def test_a_cancelled_cli_run_stops_before_its_next_agent(tmp_path: Path) -> None:
    proc = _background_run(tmp_path, "to-cancel", step_s=1.0)
    cancel = omium_cli("executions", "cancel", "to-cancel", env=_env(tmp_path))
    assert (cancel.code, cancel.out.strip()) == (0, "to-cancel: cancelling")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, err
    assert "status: cancelled" in out
    assert _started(tmp_path) == ["s1"]  # s1 was running (its thread finished); no other
    rec = _status(tmp_path, "to-cancel")
    assert (rec["status"], rec["lease_owner"]) == ("cancelled", None)


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_ctrl_c_and_sigterm_record_the_interruption_and_resume_continues(
        tmp_path: Path, sig: int, code: int) -> None:
    proc = _background_run(tmp_path, "stopped", step_s=0.5)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert "Traceback" not in out + err
    assert "interrupted: continue with: omium resume stopped" in err
    rec = _status(tmp_path, "stopped")
    assert (rec["status"], rec["failure_type"], rec["lease_owner"]) == (
        "failed", "interrupted", None)
    listed = omium_cli("executions", "list", env={**_env(tmp_path), "COLUMNS": "200"})
    assert "failed (interrupted)" in listed.out
    resumed = omium_cli("resume", "stopped", "--json", env=_env(tmp_path))
    assert resumed.code == 0, resumed.text
    assert json.loads(resumed.out)["status"] == "completed"


def test_a_killed_run_shows_as_orphaned_and_resume_takes_it_over(tmp_path: Path) -> None:
    proc = _background_run(tmp_path, "killed", step_s=0.5)
    proc.kill()
    proc.communicate(timeout=30)
    assert _status(tmp_path, "killed")["status"] == "running"
    listed = omium_cli("executions", "list", env={**_env(tmp_path), "COLUMNS": "200"})
    assert "running (orphaned)" in listed.out and "omium resume ID" in listed.out
    shown = omium_cli("executions", "show", "killed", env=_env(tmp_path))
    assert "orphaned:" in shown.out and "omium resume killed" in shown.out
    before = len(_started(tmp_path))
    resumed = omium_cli("resume", "killed", "--json", env=_env(tmp_path))
    assert resumed.code == 0, resumed.text
    result = json.loads(resumed.out)
    assert result["status"] == "completed"
    rec = _status(tmp_path, "killed")
    assert rec["lease_epoch"] == 2 and rec["lease_owner"] is None  # taken over, then done
    # Only what had not finished ran again: the checkpointed agents were reused.
    assert len(_started(tmp_path)) - before == len(AGENTS) - len(result["reused"])


def test_a_reused_execution_id_is_never_started_again(tmp_path: Path) -> None:
    wf = _workflow(tmp_path)
    first = omium_cli("run", wf, "--execution-id", "once", env=_env(tmp_path))
    assert first.code == 0, first.text
    again = omium_cli("run", wf, "--execution-id", "once", env=_env(tmp_path))
    assert again.code == 0
    assert "execution once exists already and is completed: not run again" in again.out
    assert len(_started(tmp_path)) == len(AGENTS)
    other = omium_cli("run", _workflow(tmp_path, name="other"), "--execution-id", "once",
                      env=_env(tmp_path))
    assert other.code == 2
    assert "is taken by an execution of another workflow (fx, completed)" in other.err
    nothing = omium_cli("resume", "once", env=_env(tmp_path))
    assert nothing.code == 0 and "nothing to resume" in nothing.out


def test_database_and_file_errors_are_one_line(tmp_path: Path) -> None:
    wf = _workflow(tmp_path)
    (tmp_path / "not.db").write_text("this is not a database\n" * 100)
    cases = [(f"sqlite:///{tmp_path / 'not.db'}", "file is not a database"),
             ("sqlite:////proc/no/such/dir/x.db", "No such file or directory"),
             # The OS's refusal, as uvloop ("Connection refused") or asyncio words it.
             ("postgresql://omium:secret@127.0.0.1:1/omium", "onnect")]
    for url, reason in cases:
        ran = omium_cli("run", wf, "--db", url, env=_env(tmp_path))
        assert ran.code == 5, ran.text
        (line,) = [x for x in ran.err.splitlines() if x.startswith("error:")]
        assert line.startswith("error: cannot open the database ") and reason in line
        assert "secret" not in ran.err and "omium resume" not in ran.text
    (tmp_path / "latin1.json").write_bytes(b'{"name": "caf\xe9"}')
    ran = omium_cli("run", wf, "--input", tmp_path / "latin1.json", env=_env(tmp_path))
    assert ran.code == 2 and "not UTF-8 text (byte 0xe9" in ran.err
    (tmp_path / "latin1.yaml").write_bytes(b"name: caf\xe9\nagents: []\n")
    ran = omium_cli("validate", tmp_path / "latin1.yaml")
    assert ran.code == 2 and "not UTF-8 text" in ran.err
    listed = omium_cli("executions", "list", "--json", env=_env(tmp_path))
    assert json.loads(listed.out) == []  # nothing was created


def test_ids_are_never_cut_and_unknown_ids_are_bad_input(tmp_path: Path) -> None:
    long_id = "exec-" + "7209d" * 12
    ran = omium_cli("run", _workflow(tmp_path), "--execution-id", long_id, env=_env(tmp_path))
    assert ran.code == 0
    listed = omium_cli("executions", "list", env=_env(tmp_path))  # at 80 columns
    assert long_id in listed.out
    for cmd in (("executions", "show"), ("executions", "cancel")):
        ran = omium_cli(*cmd, "nope", env=_env(tmp_path))
        assert (ran.code, ran.err.strip()) == (2, "error: no execution with id 'nope'")


def test_validate_speaks_json(tmp_path: Path) -> None:
    ran = omium_cli("validate", _workflow(tmp_path), "--json")
    assert ran.code == 0
    assert json.loads(ran.out) == {"valid": True, "name": "fx", "execution_order":
                                   "sequential", "agents": AGENTS}
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nagents: [{id: a}]\n")
    ran = omium_cli("validate", bad, "--json")
    assert ran.code == 2 and json.loads(ran.out)["valid"] is False


def test_a_vote_and_the_decision_read_as_one_story(tmp_path: Path) -> None:
    ran = omium_cli("run", ROOT / "examples" / "loan_approval" / "parallel.yaml", "--input",
                    ROOT / "examples" / "loan_approval" / "applicants" / "rejected.json",
                    "--db", f"sqlite:///{tmp_path / 'v.db'}")
    assert "decision: reject (the workflow's result)" in ran.out, ran.text
    assert "vote: agreement reached" in ran.out and "consensus: approved" not in ran.out
