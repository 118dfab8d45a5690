"""One home for the commands that change an execution: the CLI and the API reach the store's
cancel and review writes only through ``omium.engine.commands``, so their rules cannot drift
(they did: the CLI cancelled at once what the API only flagged)."""

from __future__ import annotations

import re
from pathlib import Path

from tests._cli_process import ROOT, omium_cli

SRC = ROOT / "src" / "omium"
EXAMPLE = ROOT / "examples" / "loan_approval"


def test_only_the_commands_module_writes_cancels_and_reviews() -> None:
    callers = {}
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC).as_posix()
        if rel.startswith("store/"):
            continue  # where they are implemented
        if re.search(r"\.(request_cancel|apply_review)\(", path.read_text(encoding="utf-8")):
            callers[rel] = True
    assert set(callers) == {"engine/commands.py"}


def test_cli_and_api_share_the_rules(tmp_path: Path) -> None:
    """The same ended execution: the CLI refuses to cancel it (exit 2) with the message the
    API's 409 carries; a resume of it is 'nothing to resume'."""
    import asyncio

    from omium.engine import commands
    from omium.errors import ExecutionStateError
    from omium.store import open_store

    env = {"OMIUM_DATABASE_URL": f"sqlite:///{tmp_path / 'o.db'}"}
    assert omium_cli("run", EXAMPLE / "workflow.yaml", "--execution-id", "done",
                     env=env).code == 0
    ran = omium_cli("executions", "cancel", "done", env=env)
    assert (ran.code, ran.err.strip()) == (2, "error: execution done is completed already")

    async def api_side() -> str:
        async with open_store(env["OMIUM_DATABASE_URL"]) as store:
            try:
                await commands.cancel(store, "done", "local")
            except ExecutionStateError as err:
                return str(err)
            return "cancelled?"

    assert asyncio.run(api_side()) == "execution done is completed already"
    ran = omium_cli("resume", "done", env=env)
    assert ran.code == 0 and "nothing to resume" in ran.out
