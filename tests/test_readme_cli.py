"""The README's CLI table is what the CLI does: every command it lists runs once, as written
(placeholders filled in), through the real ``omium``; the servers it lists (which would not
return) must at least accept every option the table gives them."""

from __future__ import annotations

import datetime
import re
import shlex

import pytest

from tests._cli_process import ROOT, omium_cli

EXAMPLE = ROOT / "examples" / "loan_approval"
SERVERS = (("serve",), ("worker",), ("llm", "serve"))  # they would not return


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## CLI\n", 1)[1].split("\n## ", 1)[0]
    commands = []
    for row in section.splitlines():
        if row.startswith("| `omium"):
            first_cell = re.split(r"(?<!\\)\|", row)[1]
            commands += [c.replace("\\|", "|") for c in re.findall(r"`(omium [^`]+)`",
                                                                  first_cell)]
    return commands


COMMANDS = _readme_commands()


def _args(template: str) -> list[str]:
    """The template as argv: optional parts kept (brackets dropped), the first of each
    ``a|b`` alternative, placeholders filled per command."""
    words = shlex.split(re.sub(r"[\[\]]", "", template))[1:]
    today = datetime.date.today().isoformat()
    command = " ".join(w for w in words[:2] if not w.startswith("-") and not w.isupper())
    ids = {"review": "split", "executions cancel": "to-cancel"}
    fill = {"WORKFLOW": str(EXAMPLE / "workflow.yaml"), "FILE": str(
        EXAMPLE / "applicants" / "approved.json"), "ID": ids.get(command, "walk"),
        "S": "completed", "N": "5", "DAY": today, "T": "local", "TENANT": "acme",
        "AMOUNT": "10", "NAME": "newco"}
    out = []
    for i, w in enumerate(words):
        w = w.split("|", 1)[0]
        if w in ("--host", "--port", "--model") and (i + 1 == len(words)
                                                    or words[i + 1].startswith("-")):
            out += [w, {"--host": "127.0.0.1", "--port": "8123", "--model": "m"}[w]]
            continue
        out.append(fill.get(w, w))
    if out[:1] == ["run"]:
        out += ["--execution-id", "walk"] if "--execution-id" not in out else []
    return out


def test_the_table_lists_the_commands_a_newcomer_needs() -> None:
    firsts = {" ".join(shlex.split(c)[1:3]) for c in COMMANDS}
    for needed in ("run WORKFLOW", "resume ID", "executions list", "executions show",
                   "executions cancel", "validate WORKFLOW", "tenants list"):
        assert any(f.startswith(needed) for f in firsts), needed


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str | None]:
    path = tmp_path_factory.mktemp("readme") / "omium.db"
    env: dict[str, str | None] = {"OMIUM_DATABASE_URL": f"sqlite:///{path}",
                                  "OMIUM_LLM_CONFIG": None}
    # What the table's commands act on: a split vote to review, one to cancel, a tenant.
    for exec_id in ("split", "to-cancel"):
        ran = omium_cli("run", EXAMPLE / "parallel.yaml", "--execution-id", exec_id, env=env)
        assert ran.code == 3, ran.text
    assert omium_cli("tenants", "create", "acme", env=env).code == 0
    return env


@pytest.mark.parametrize("template", COMMANDS)
def test_each_documented_command_runs_as_written(template: str,
                                                 db: dict[str, str | None]) -> None:
    args = _args(template)
    server = next((c for c in SERVERS if tuple(args[:len(c)]) == c), None)
    if server is not None:
        # Every option the table names must be one the server takes.
        ran = omium_cli(*server, "--help", env={**db, "COLUMNS": "200"})
        assert ran.code == 0, ran.text
        for option in (a for a in args if a.startswith("--")):
            assert option in ran.out, f"{template}: {option} is not an option"
        return
    if args[0] in ("resume",):  # after the run it resumes; the run is its own row
        omium_cli("run", EXAMPLE / "workflow.yaml", "--execution-id", "walk", env=db)
    ran = omium_cli(*args, env=db)
    assert ran.code == 0, f"{template} -> omium {' '.join(args)}: {ran.text}"
