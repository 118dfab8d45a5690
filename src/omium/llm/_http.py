"""The router's HTTP/1.1 client: keep-alive connections to one backend, one write per request,
responses parsed by httptools (llhttp, the parser uvicorn serves with).

Why not aiohttp, which this replaced: its client runs ~200 Python calls per request (cookie,
trace, redirect and timeout machinery an OpenAI backend never needs). After an idle wait (the
model's latency) that code runs cache-cold, and it cost ~0.45 ms per call more than this path
on the 2-core bench machine, the largest piece of what the gateway added to a LangGraph run
(bench/adapters.py). What a backend call needs is small: POST a JSON body, read a JSON answer
or an SSE stream, over plain HTTP or TLS, with connect and read timeouts.

Errors are ``HTTPError`` subclasses (``ConnectError``, ``ReadTimeout``, ``Disconnected``,
``ProtocolError``); the backend maps them to its failure kinds. A request is never retried
here: a POST the server may have read is the router's decision (fallback), not the client's.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import httptools

# Idle connections older than this are closed rather than reused (aiohttp's was the same).
KEEPALIVE_S = 30.0
USER_AGENT = "omium"


class HTTPError(Exception):
    """The request got no complete HTTP answer."""


class ConnectError(HTTPError):
    """No connection could be opened (refused, unreachable, TLS handshake, connect timeout)."""


class ReadTimeout(HTTPError):
    """The server sent nothing for the read timeout."""


class Disconnected(HTTPError):
    """The connection closed before the answer was complete."""


class ProtocolError(HTTPError):
    """The server's bytes are not an HTTP/1.1 response."""


class _Connection(asyncio.Protocol):
    """One connection; one request at a time on it. httptools calls the ``on_*`` methods."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.idle_since = 0.0
        self._waiter: asyncio.Future[None] | None = None
        self.begin()

    def begin(self) -> None:
        """Ready for the next response."""
        self.status = 0
        self.headers: dict[str, str] = {}
        self.chunks: list[bytes] = []
        self.head_done = self.complete = self.keep_alive = False
        self.until_close = False  # a body without length or chunks: it ends at the close
        self.error: HTTPError | None = None

    # -- asyncio
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as err:
            self._fail(ProtocolError(f"malformed HTTP response: {err}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.complete:
            if self.head_done and self.until_close and exc is None:
                self.complete = True
                self._wake()
            else:
                reason = f": {exc}" if exc else ""
                self._fail(Disconnected(f"the server closed the connection{reason}"))

    # -- httptools
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        if 100 <= self.status < 200:  # informational (100 Continue, 103 Early Hints): the
            return                    # answer follows it on the same connection
        self.keep_alive = self.parser.should_keep_alive()
        self.until_close = ("content-length" not in self.headers
                            and "chunked" not in self.headers.get("transfer-encoding", "")
                            and self.status not in (204, 304) and self.status >= 200)
        self.head_done = True
        self._wake()

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)
        self._wake()

    def on_message_complete(self) -> None:
        if 100 <= self.status < 200:
            self.status, self.headers = 0, {}
            return
        self.complete = True
        self._wake()

    # -- the caller's side
    def _fail(self, err: HTTPError) -> None:
        if self.error is None:
            self.error = err
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait(self, limit_s: float) -> None:
        """Until the next event (head, body bytes, the end, an error); ReadTimeout after
        ``limit_s`` seconds of nothing. (A timer on the waiter, not ``asyncio.timeout``: no
        task cancellation to undo on every read.)"""
        if self.error is not None:
            raise self.error
        waiter = self._waiter = self.loop.create_future()
        timer = self.loop.call_later(limit_s, self._timed_out, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None
        if self.error is not None:
            raise self.error

    @staticmethod
    def _timed_out(waiter: asyncio.Future[None]) -> None:
        if not waiter.done():
            waiter.set_exception(ReadTimeout("no answer within the read timeout"))

    def send(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class Response:
    """An answer whose head has arrived; its body is read with ``read`` or ``lines``. Give it
    back with ``release`` (the connection is reused only if the answer was read whole)."""

    def __init__(self, pool: Pool, conn: _Connection) -> None:
        self._pool, self._conn = pool, conn
        self.status, self.headers = conn.status, conn.headers
        self._released = False

    async def read(self) -> bytes:
        conn = self._conn
        while not conn.complete:
            await conn.wait(self._pool.read_timeout_s)
        body = b"".join(conn.chunks)
        conn.chunks.clear()
        return body

    async def lines(self) -> AsyncIterator[bytes]:
        """The body line by line as it streams in (each with its b"\\n"; the last may lack
        it)."""
        conn, rest = self._conn, b""
        while True:
            if conn.chunks:
                data = rest + b"".join(conn.chunks)
                conn.chunks.clear()
                *done, rest = data.split(b"\n")
                for line in done:
                    yield line + b"\n"
            elif conn.complete:
                if rest:
                    yield rest
                return
            else:
                await conn.wait(self._pool.read_timeout_s)

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._pool._give_back(self._conn)


class Pool:
    """Connections to the server of ``base_url`` (``http`` or ``https``), at most ``limit``
    requests at once; every request carries ``headers``."""

    def __init__(self, base_url: str, *, limit: int, connect_timeout_s: float,
                 read_timeout_s: float, headers: dict[str, str] | None = None,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        url = urlsplit(base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self.host, self.tls = url.hostname, url.scheme == "https"
        self.port = url.port or (443 if self.tls else 80)
        self.prefix = url.path.rstrip("/")
        self.connect_timeout_s, self.read_timeout_s = connect_timeout_s, read_timeout_s
        netloc = url.netloc.rpartition("@")[2]
        lines = [f"Host: {netloc}", f"User-Agent: {USER_AGENT}", "Accept: application/json",
                 *(f"{k}: {v}" for k, v in (headers or {}).items())]
        self._head = ("\r\n".join(lines) + "\r\n").encode("latin-1")
        self._limit = asyncio.Semaphore(limit)
        self._idle: list[_Connection] = []
        self._ssl = ssl_context  # https: the system's trusted CAs unless given one
        self._closed = False

    async def request(self, method: str, path: str, body: bytes | None = None) -> Response:
        """Send it and wait for the answer's head (the body is the caller's to read)."""
        if self._closed:
            raise ConnectError("the backend's client is closed")
        await self._limit.acquire()  # outside the try: a cancelled wait holds no slot
        conn: _Connection | None = None
        try:
            conn = self._reusable() or await self._connect()
            conn.begin()
            length = b"" if body is None else b"Content-Length: %d\r\n" % len(body)
            conn.send(b"%s %s HTTP/1.1\r\n%s%s\r\n%s" % (
                method.encode(), (self.prefix + path).encode(), self._head, length,
                body or b""))
            while not conn.head_done:
                await conn.wait(self.read_timeout_s)
        except BaseException:
            if conn is not None:
                conn.close()
            self._limit.release()
            raise
        return Response(self, conn)

    def _reusable(self) -> _Connection | None:
        now = time.monotonic()
        while self._idle:
            conn = self._idle.pop()
            if not conn.closed and now - conn.idle_since < KEEPALIVE_S:
                return conn
            conn.close()
        return None

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        if self.tls and self._ssl is None:
            self._ssl = ssl.create_default_context()
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                _, conn = await loop.create_connection(
                    lambda: _Connection(loop), self.host, self.port,
                    ssl=self._ssl if self.tls else None,
                    server_hostname=self.host if self.tls else None)
        except TimeoutError:
            raise ConnectError(f"no connection to {self.host}:{self.port} within "
                               f"{self.connect_timeout_s:g} s") from None
        except (OSError, ssl.SSLError) as err:
            raise ConnectError(f"cannot connect to {self.host}:{self.port}: {err}") from None
        return conn

    def _give_back(self, conn: _Connection) -> None:
        self._limit.release()
        if conn.complete and conn.keep_alive and not conn.closed and not self._closed:
            conn.idle_since = time.monotonic()
            self._idle.append(conn)
        else:  # unread, cut short, or the server said close: never reused
            conn.close()

    async def aclose(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
