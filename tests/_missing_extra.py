"""A framework adapter's workflow where the framework is not installed: the CLI (`validate`,
`run`) and the API refuse it as bad input naming the agent and the extra to install. The
framework is made unimportable (``sys.modules[name] = None``), as for a missing package."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests._api_harness import V1, Api
from tests._processes import ROOT


def cli_refuses(tmp_path: Path, module: str, workflow: dict[str, Any], agent_id: str,
                extra: str) -> None:
    """``omium validate`` and ``omium run`` exit 2 without a traceback, naming both."""
    wf = tmp_path / "wf.yaml"
    wf.write_text(yaml.safe_dump(workflow))
    code = (f"import sys; sys.modules[{module!r}] = None; "
            "from omium.cli import main; sys.argv[0] = 'omium'; main()")
    env = {**os.environ, "PYTHONPATH": str(ROOT),
           "OMIUM_DATABASE_URL": f"sqlite:///{tmp_path / 'o.db'}"}
    for command in (["validate", str(wf)], ["run", str(wf)]):
        p = subprocess.run([sys.executable, "-c", code, *command], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 2, p.stdout + p.stderr
        assert "Traceback" not in p.stderr
        assert f"agents[0] ({agent_id}).framework" in p.stderr
        assert f"pip install 'omium[{extra}]'" in p.stderr


async def api_refuses(api: Api, monkeypatch: pytest.MonkeyPatch, module: str,
                      workflow: dict[str, Any], agent_id: str, extra: str) -> None:
    """``POST /executions`` answers 422 with one problem at the agent's framework."""
    for name in [m for m in sys.modules if m == module or m.startswith(f"{module}.")]:
        monkeypatch.setitem(sys.modules, name, None)
    _, h = await api.tenant("acme")
    r = await api.client.post(f"{V1}/executions", headers=h, json={"workflow": workflow})
    assert r.status_code == 422, r.text
    [problem] = r.json()["detail"]
    assert problem["loc"] == f"agents[0] ({agent_id}).framework"
    assert f"pip install 'omium[{extra}]'" in problem["msg"]
