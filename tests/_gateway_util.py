"""Serving an ASGI app (the whole REST API with its /v1 gateway) with uvicorn on a real
loopback socket inside the test's event loop, and the LLM config the gateway tests share."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import uvicorn
import yaml

from omium.testing.fake_server import FakeOpenAIServer


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:  # pytest keeps its own handlers
        yield


def bound_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(256)
    sock.setblocking(False)
    return sock


@asynccontextmanager
async def served(app: Any, sock: socket.socket | None = None) -> AsyncIterator[str]:
    """``http://127.0.0.1:PORT`` serving ``app`` (its lifespan included) until the block
    ends."""
    sock = sock or bound_socket()
    server = _Server(uvicorn.Config(app, lifespan="on", log_config=None, access_log=False,
                                    log_level="warning"))
    task = asyncio.ensure_future(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await task
        sock.close()


def write_llm_config(path: Path, local: FakeOpenAIServer, hosted: FakeOpenAIServer,
                     **circuit: Any) -> Path:
    """A local backend (smollm2, $0.001 a call) before a hosted one (gpt-3.5-turbo, priced
    per token): the bill of a hosted call shows exactness to the nano-dollar."""
    path.write_text(yaml.safe_dump({
        "backends": [
            {"name": "local", "base_url": local.base_url, "model": "smollm2"},
            {"name": "openai", "base_url": hosted.base_url, "model": "gpt-3.5-turbo",
             "kind": "hosted"}],
        "circuit": {"failure_threshold": 100, **circuit}}))
    return path


@asynccontextmanager
async def fake_backends(tmp_path: Path, monkeypatch: Any
                        ) -> AsyncIterator[tuple[FakeOpenAIServer, FakeOpenAIServer]]:
    """A local and a hosted fake server, configured as the LLM backends ($OMIUM_LLM_CONFIG,
    which subprocesses inherit) while the block runs."""
    async with FakeOpenAIServer(model="smollm2") as local, \
            FakeOpenAIServer(model="gpt-3.5-turbo") as hosted:
        monkeypatch.setenv("OMIUM_LLM_CONFIG", str(write_llm_config(
            tmp_path / "omium-llm.yaml", local, hosted)))
        yield local, hosted


def hosted_nano(prompt: int, completion: int) -> int:
    """gpt-3.5-turbo's default price: $0.0005 / 1K in, $0.0015 / 1K out, in nano-dollars."""
    return prompt * 500 + completion * 1500


LOCAL_CALL_NANO = 1_000_000  # a local inference: $0.001
