"""The gateway served inside this process on 127.0.0.1 and a random port (a CLI run, a worker
with no gateway URL), started by the first agent that asks for its URL.

``url()`` is synchronous and thread-safe, because agents read ``ctx.llm_base_url`` as a plain
attribute, sync ones from their worker thread: the socket is bound and listening at once (a
client that connects before the server runs waits in the kernel's backlog), and uvicorn is
started on the event loop the gateway was made on. Nothing is bound before that. (The engine
imports this module only then, so runs that never ask do not import uvicorn either.)
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import socket
import threading
from collections.abc import Iterator

import uvicorn

from omium.llm.gateway import Gateway


class LocalGateway:
    def __init__(self, gateway: Gateway, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.gateway = gateway
        self._loop = loop or asyncio.get_running_loop()
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._url: str | None = None
        self._server: _QuietServer | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def started(self) -> bool:
        return self._url is not None

    def url(self) -> str:
        """``http://127.0.0.1:PORT/v1``, serving from now on."""
        with self._lock:
            if self._url is None:
                if self._closed:
                    raise RuntimeError("the local LLM gateway is closed")
                # IPPROTO_TCP, not the default 0: asyncio sets TCP_NODELAY only on accepted
                # sockets whose proto says TCP, and uvicorn writes a response's head and body
                # apart, so without it Nagle holds the body for the client's delayed ACK:
                # +40 ms on every keep-alive call (bench/adapters.py found it).
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
                sock.bind(("127.0.0.1", 0))
                sock.listen(1024)
                sock.setblocking(False)
                self._sock = sock
                self._url = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
                self._loop.call_soon_threadsafe(self._start)
            return self._url

    def _start(self) -> None:
        if self._closed or self._sock is None:
            return
        # No proxy stands in front of a loopback socket: no X-Forwarded-* middleware.
        config = uvicorn.Config(self.gateway, lifespan="off", log_config=None,
                                access_log=False, log_level="warning", proxy_headers=False)
        self._server = _QuietServer(config)
        # In a context of its own: this runs in the context of the agent that first asked
        # for the URL, and uvicorn's request tasks copy the server's, so that agent's context
        # variables (its runtime, LangChain's run config) would be every request's.
        self._task = self._loop.create_task(self._server.serve(sockets=[self._sock]),
                                            context=contextvars.Context())

    async def aclose(self) -> None:
        with self._lock:
            self._closed = True
        if self._task is not None:
            await self.gateway.aclose()  # streamed calls still under way bill first
            assert self._server is not None
            self._server.should_exit = True
            await self._task
            self._task = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None


class _QuietServer(uvicorn.Server):
    """uvicorn's Server without its signal handlers: the CLI and the worker handle Ctrl-C and
    SIGTERM themselves (exit 130/143, graceful drain)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield
