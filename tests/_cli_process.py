"""The real ``omium`` command in a subprocess, as a user runs it: exit code, stdout and stderr,
and never a Python traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Ran:
    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err


def omium_cli(*args: object, cwd: Path | None = None, env: dict[str, str] | None = None,
              timeout: float = 120, traceback_ok: bool = False) -> Ran:
    """``omium ARGS`` (``python -m omium.cli``) with ``tests.*`` and ``examples.*`` importable;
    ``env`` is added to this process's environment (a value None removes the variable)."""
    full = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "80", "NO_COLOR": "1"}
    for k, v in (env or {}).items():
        if v is None:
            full.pop(k, None)
        else:
            full[k] = v
    p = subprocess.run([sys.executable, "-m", "omium.cli", *map(str, args)], cwd=cwd or ROOT,
                       env=full, capture_output=True, text=True, timeout=timeout,
                       stdin=subprocess.DEVNULL)
    ran = Ran(p.returncode, p.stdout, p.stderr)
    if not traceback_ok:
        assert "Traceback" not in ran.text, ran.text
    return ran
