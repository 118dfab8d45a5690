"""A real OpenAI-compatible HTTP server for tests and benchmarks (aiohttp, 127.0.0.1).

It answers ``POST /v1/chat/completions`` and ``POST /v1/completions`` (plain JSON, or server-sent
events when ``"stream": true``), ``GET /v1/models`` and ``GET /health``. What it does with a
completion request comes from, in order of precedence:

1. directives in the last message's content (or the prompt), e.g. ``#status=429`` or
   ``#stall=0.5`` (grammar in :mod:`omium.testing._fake_behaviour`), so concurrent callers can
   vary behaviour per call;
2. the script (:meth:`FakeOpenAIServer.script`): each completion request takes the next entry;
3. :attr:`FakeOpenAIServer.default`.

Run it as a process for benchmarks::

    python -m omium.testing.fake_server --port 8099 [--model m] [--delay 0] [--reply TEXT]

It prints ``ready http://127.0.0.1:PORT/v1`` once listening and runs until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import signal
import socket
import time
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import Any

from aiohttp import web

from omium.testing._fake_behaviour import (
    BadRequest,
    Behaviour,
    apply_directives,
    as_behaviour,
    default_reply,
    error_body,
    read_prompt,
    stream_events,
    usage_of,
)

__all__ = ["Behaviour", "FakeOpenAIServer", "main"]

_SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


def _json(obj: Any, status: int = 200) -> web.Response:
    return web.Response(text=_dumps(obj), status=status, content_type="application/json")


def _error(status: int, message: str, code: str | None = None) -> web.Response:
    return _json(error_body(status, message, code), status)


class FakeOpenAIServer:
    """An OpenAI-compatible server on a real socket whose behaviour tests control.

    Use ``async with FakeOpenAIServer() as server:`` (or :meth:`start` / :meth:`stop`) and point
    a client at :attr:`base_url`. ``requests`` holds every completion request body that parsed
    as a JSON object; :attr:`count` counts every completion request, including ones that failed,
    were closed, stalled or had an unreadable body. Set ``keep_requests=False`` to keep no bodies
    (long benchmark runs).
    """

    def __init__(
        self,
        *,
        model: str = "fake-model",
        host: str = "127.0.0.1",
        port: int = 0,
        keep_requests: bool = True,
    ) -> None:
        self.model = model
        self.host = host
        self.port = port
        self.keep_requests = keep_requests
        self.default = Behaviour()
        self.health_status = 200
        self.requests: list[dict[str, Any]] = []
        self._script: deque[Behaviour] = deque()
        self._count = 0
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self._base_url: str | None = None
        self._stopping = asyncio.Event()

    # -- control -------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT/v1``; only after :meth:`start`."""
        if self._base_url is None:
            raise RuntimeError("FakeOpenAIServer is not started")
        return self._base_url

    @property
    def count(self) -> int:
        """Completion requests received so far (failed, closed and stalled ones included)."""
        return self._count

    def script(self, *behaviours: Behaviour | str) -> None:
        """Queue behaviours for the next completion requests, in order (a ``str`` is a kind).

        Each completion request whose body is valid takes the next entry (directives in it still
        override that entry's fields); when the script runs out, :attr:`default` applies again.
        Calling it again appends to what is left.
        """
        self._script.extend(as_behaviour(b) for b in behaviours)

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Bind the socket and start serving."""
        if self._runner is not None:
            raise RuntimeError("FakeOpenAIServer is already started")
        app = web.Application(client_max_size=64 * 1024 * 1024)  # long prompts in benchmarks
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/completions", self._text)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/health", self._health)
        # handler_cancellation: a stalled handler ends when its client gives up.
        runner = web.AppRunner(
            app, access_log=None, handler_cancellation=True, shutdown_timeout=0.1
        )
        await runner.setup()
        sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.port))
            sock.listen(1024)
            await web.SockSite(runner, sock).start()
        except BaseException:
            sock.close()
            await runner.cleanup()
            raise
        self._runner = runner
        self._stopping = asyncio.Event()
        self.port = sock.getsockname()[1]
        host = f"[{self.host}]" if ":" in self.host else self.host
        self._base_url = f"http://{host}:{self.port}/v1"

    async def stop(self) -> None:
        """Stop serving and drop open connections (stalled requests are cancelled)."""
        runner, self._runner = self._runner, None
        if runner is not None:
            self._stopping.set()  # wakes stalled handlers, which then drop their connections
            await runner.cleanup()

    async def __aenter__(self) -> FakeOpenAIServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- handlers ------------------------------------------------------------------------

    async def _health(self, request: web.Request) -> web.Response:
        status = self.health_status
        return _json({"status": "ok" if status < 400 else "unavailable"}, status)

    async def _models(self, request: web.Request) -> web.Response:
        model = {"id": self.model, "object": "model", "created": 0, "owned_by": "omium"}
        return _json({"object": "list", "data": [model]})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        return await self._complete(request, chat=True)

    async def _text(self, request: web.Request) -> web.StreamResponse:
        return await self._complete(request, chat=False)

    async def _complete(self, request: web.Request, *, chat: bool) -> web.StreamResponse:
        self._count += 1
        try:
            body = json.loads(await request.read())
        except ValueError:
            return _error(400, "request body is not valid JSON")
        if not isinstance(body, dict):
            return _error(400, "request body must be a JSON object")
        if self.keep_requests:
            self.requests.append(body)
        try:
            input_words, last_text = read_prompt(body, chat=chat)
            b = apply_directives(self._script[0] if self._script else self.default, last_text)
        except BadRequest as e:
            return _error(400, str(e), e.code)
        if self._script:
            self._script.popleft()

        if b.delay_s > 0:
            await asyncio.sleep(b.delay_s)
        if b.kind == "stall":
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), b.stall_s)
        if b.kind == "close" or self._stopping.is_set():
            if request.transport is not None:
                request.transport.close()
            return web.Response(status=500)  # never sent: the connection is gone
        if b.kind == "fail":
            return _error(b.status, f"fake failure (HTTP {b.status})")

        reply = b.reply if b.reply is not None else default_reply(last_text)
        usage = None if b.omit_usage else usage_of(b, input_words, reply)
        model = body.get("model")
        head = {
            "id": f"{'chatcmpl' if chat else 'cmpl'}-fake-{next(self._ids)}",
            "object": "chat.completion" if chat else "text_completion",
            "created": int(time.time()),
            "model": model if isinstance(model, str) and model else self.model,
        }
        if body.get("stream") is True:
            options = body.get("stream_options")
            with_usage = isinstance(options, dict) and options.get("include_usage") is True
            return await self._stream(request, head, reply, usage if with_usage else None, chat)
        if chat:
            choice: dict[str, Any] = {
                "index": 0,
                "message": {"role": "assistant", "content": reply},
                "finish_reason": "stop",
            }
        else:
            choice = {"index": 0, "text": reply, "logprobs": None, "finish_reason": "stop"}
        out = {**head, "choices": [choice]}
        if usage is not None:
            out["usage"] = usage
        return _json(out)

    async def _stream(
        self,
        request: web.Request,
        head: dict[str, Any],
        reply: str,
        usage: dict[str, Any] | None,
        chat: bool,
    ) -> web.StreamResponse:
        """Server-sent events: one chunk per word, a finish chunk, the usage chunk, ``[DONE]``."""
        events = stream_events(head, reply, usage, chat=chat)
        response = web.StreamResponse(status=200, headers=_SSE_HEADERS)
        await response.prepare(request)
        for event in events:
            await response.write(f"data: {_dumps(event)}\n\n".encode())
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response


# -- process entry point -------------------------------------------------------------------


async def _serve(args: argparse.Namespace) -> None:
    server = FakeOpenAIServer(model=args.model, host=args.host, port=args.port, keep_requests=False)
    server.default.delay_s = args.delay
    server.default.reply = args.reply
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"ready {server.base_url}", flush=True)
    try:
        await stop.wait()
    finally:
        await server.stop()


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def main(argv: list[str] | None = None) -> None:
    """``python -m omium.testing.fake_server``: serve until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(description="Fake OpenAI-compatible server for benchmarks.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (default)")
    parser.add_argument("--model", default="fake-model")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before each answer")
    parser.add_argument("--reply", default=None,
                        help="answer every call with this text (default: echo the prompt)")
    args = parser.parse_args(argv)
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(_serve(args))


if __name__ == "__main__":
    main()
