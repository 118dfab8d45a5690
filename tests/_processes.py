"""Real ``omium`` processes for tests: a free port, a CLI subprocess, waiting for HTTP."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def omium(*args: str, env: dict[str, str], **kw: object) -> subprocess.Popen:
    """``omium ARGS`` from the repository root (so ``tests.*`` and ``examples.*`` import)."""
    return subprocess.Popen([sys.executable, "-m", "omium.cli", *args], cwd=ROOT, env=env,
                            **kw)  # type: ignore[call-overload]


async def wait_http(url: str, within: float = 30) -> None:
    async with aiohttp.ClientSession() as s:
        for _ in range(int(within / 0.1)):
            try:
                async with s.get(url) as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError(f"{url} never came up")
