"""Slow clients cannot hold sockets: a deadline for the request head and one for the body.

uvicorn closes idle keep-alive connections (``timeout_keep_alive``) and caps connections
(``limit_concurrency``), but it waits forever for a request head that never completes, and an
app waits forever for a body sent a byte at a time. ``HeadTimeoutProtocol`` (given to uvicorn as
``http=``) answers 408 and closes a connection whose head is not complete within
``Settings.header_timeout_s`` of its first byte (of connecting, for the first request), and
431 once a head passes ``MAX_HEAD_BYTES``; ``BodyTimeoutMiddleware`` answers 408 (and closes)
when a body is not complete within ``Settings.body_timeout_s``.
"""

from __future__ import annotations

import asyncio
import functools
import json
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from omium.api.settings import Settings

MAX_HEAD_BYTES = 64 * 1024  # request line and headers; uvicorn's h11 default is 16 KiB
PROTOCOL = "omium.api.slowclients:HeadTimeoutProtocol"  # uvicorn.run(http=PROTOCOL)


@functools.cache
def _head_timeout_s() -> float:
    # Read once per process: `omium serve` puts its settings in the environment of every
    # API process it starts.
    return Settings.from_env().header_timeout_s


def _raw_response(status: bytes, detail: str) -> bytes:
    body = ('{"detail":"' + detail + '"}').encode()
    return (b"HTTP/1.1 " + status + b"\r\ncontent-type: application/json\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n"
            + body)


class _HeadDeadline:
    """Mixed into one of uvicorn's HTTP/1.1 protocol classes (which provide ``loop``,
    ``transport`` and the callbacks below); the subclass calls ``_head_done`` once a request
    head has been parsed."""

    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    _head_timer: asyncio.TimerHandle | None = None
    _awaiting_head = True  # between requests: the next bytes start a request head
    _head_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        self._arm_head_timer()  # a client that connects and sends nothing is slow too

    def data_received(self, data: bytes) -> None:
        if self._awaiting_head and self._head_timer is None:
            self._arm_head_timer()
        super().data_received(data)  # type: ignore[misc]
        if self._awaiting_head:  # counted after parsing: a chunk may also hold a body
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES:
                self._refuse(b"431 Request Header Fields Too Large",
                             f"request head exceeds {MAX_HEAD_BYTES} bytes")

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)  # type: ignore[misc]

    def _head_done(self) -> None:
        self._awaiting_head = False
        self._head_bytes = 0
        self._cancel_head_timer()

    def _next_head(self) -> None:
        # The keep-alive timer covers the idle wait; the head deadline starts with its bytes.
        self._awaiting_head = True
        self._head_bytes = 0

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(_head_timeout_s(), self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._awaiting_head:
            self._refuse(b"408 Request Timeout",
                         f"request head not complete within {_head_timeout_s():g} s")

    def _refuse(self, status: bytes, detail: str) -> None:
        self._cancel_head_timer()
        if not self.transport.is_closing():
            self.transport.write(_raw_response(status, detail))
            self.transport.close()


def _protocol_class() -> type[asyncio.Protocol]:
    """The deadline on the implementation uvicorn's ``auto`` would pick: httptools if
    installed (uvicorn[standard]), else h11."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:  # pragma: no cover - httptools comes with uvicorn[standard]
        import h11
        from uvicorn.protocols.http.h11_impl import H11Protocol

        class H11HeadTimeout(_HeadDeadline, H11Protocol):
            def handle_events(self) -> None:
                super().handle_events()
                if self._awaiting_head and self.conn.their_state is not h11.IDLE:
                    self._head_done()

            def on_response_complete(self) -> None:
                self._next_head()
                super().on_response_complete()

        return H11HeadTimeout

    class HttpToolsHeadTimeout(_HeadDeadline, HttpToolsProtocol):
        def on_headers_complete(self) -> None:
            self._head_done()
            super().on_headers_complete()

        def on_response_complete(self) -> None:
            if not self.pipeline:  # a pipelined request's head has been read already
                self._next_head()
            super().on_response_complete()

    return HttpToolsHeadTimeout


HeadTimeoutProtocol = _protocol_class()


class BodyTimeoutError(HTTPException):
    def __init__(self, timeout_s: float) -> None:
        super().__init__(408, f"request body not complete within {timeout_s:g} s",
                         headers={"Connection": "close"})


class BodyTimeoutMiddleware:
    """Gives each request ``timeout_s`` from the app's first read to deliver its whole body;
    the answer to a late body is 408 with ``Connection: close`` (so uvicorn drops the socket).
    Once the body is complete, ``receive`` waits as long as the app likes (an event stream
    waits on it for the client to disconnect)."""

    def __init__(self, app: ASGIApp, timeout_s: float) -> None:
        self.app = app
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state: dict[str, Any] = {"body_done": False, "deadline": None, "started": False}

        async def timed_receive() -> Message:
            if state["body_done"]:
                return await receive()
            if state["deadline"] is None:  # from the app's first read: the body is due now
                state["deadline"] = asyncio.get_running_loop().time() + self.timeout_s
            try:
                # asyncio.timeout_at arms a timer handle; wait_for would start a task per read
                # (measured: ~9% of a busy server's own time).
                async with asyncio.timeout_at(state["deadline"]):
                    message = await receive()
            except TimeoutError:
                raise BodyTimeoutError(self.timeout_s) from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                state["body_done"] = True
            return message

        async def tracked_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["started"] = True
            await send(message)

        try:
            await self.app(scope, timed_receive, tracked_send)
        except BodyTimeoutError as late:
            # Raised where no exception handler runs (a middleware reading the body first).
            if state["started"]:
                raise
            for message in _json_response(late.status_code, late.detail, close=True):
                await send(message)


def _json_response(status: int, detail: str, *, close: bool) -> tuple[Message, Message]:
    body = json.dumps({"detail": detail}, separators=(",", ":")).encode()
    headers = [(b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    return ({"type": "http.response.start", "status": status, "headers": headers},
            {"type": "http.response.body", "body": body})
