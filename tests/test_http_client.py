"""``omium.llm._http``, the router's HTTP/1.1 client, against raw servers on loopback that
answer the ways real ones do: keep-alive, chunked, close-delimited, closing idle connections,
cutting an answer short, sending garbage, saying nothing; and TLS with a verified certificate.
The router's behaviour over it (fallback, breakers, streaming, billing) is tests/test_router.py's
and tests/test_gateway.py's, on the fake OpenAI server."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from omium.llm import _http

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class Server:
    """A raw TCP server on 127.0.0.1 running ``handler`` per connection, counting them."""

    def __init__(self, handler: Handler) -> None:
        self.handler, self.connections = handler, 0

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


@asynccontextmanager
async def serving(handler: Handler, ssl_ctx: ssl.SSLContext | None = None
                  ) -> AsyncIterator[tuple[Server, str]]:
    server = Server(handler)
    srv = await asyncio.start_server(server._serve, "127.0.0.1", 0, ssl=ssl_ctx)
    port = srv.sockets[0].getsockname()[1]
    scheme = "https" if ssl_ctx else "http"
    try:
        yield server, f"{scheme}://{'localhost' if ssl_ctx else '127.0.0.1'}:{port}/v1"
    finally:
        srv.close()


def pool(url: str, **kw: object) -> _http.Pool:
    args: dict[str, object] = {"limit": 8, "connect_timeout_s": 2.0, "read_timeout_s": 5.0}
    return _http.Pool(url, **(args | kw))  # type: ignore[arg-type]


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """One request: its head and its body (by Content-Length)."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return head, await reader.readexactly(length)


def answer(body: bytes, *extra: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (
        len(body), b"".join(h + b"\r\n" for h in extra), body)


async def echo_forever(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Keep-alive: answers every request on the connection with its own body."""
    while True:
        _, body = await read_request(reader)
        writer.write(answer(body))
        await writer.drain()


async def twice(handler: Handler, pause_s: float = 0.0) -> tuple[list[bytes], int]:
    """Two calls, ``pause_s`` apart: the bodies answered, and the connections they took."""
    async with serving(handler) as (server, url):
        p = pool(url)
        got = [(await call(p, b"1"))[1]]
        await asyncio.sleep(pause_s)
        got.append((await call(p, b"2"))[1])
        await p.aclose()
    return got, server.connections


async def call(p: _http.Pool, body: bytes) -> tuple[int, bytes]:
    resp = await p.request("POST", "/chat/completions", body)
    try:
        return resp.status, await resp.read()
    finally:
        resp.release()


async def test_requests_share_a_kept_alive_connection_and_carry_their_headers() -> None:
    heads: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head, body = await read_request(reader)
            heads.append(head)
            writer.write(answer(body))

    async with serving(handler) as (server, url):
        p = pool(url, headers={"Authorization": "Bearer k"})
        assert [await call(p, b'{"n":%d}' % i) for i in range(3)] == [
            (200, b'{"n":%d}' % i) for i in range(3)]
        await p.aclose()
    assert server.connections == 1
    assert heads[0].startswith(b"POST /v1/chat/completions HTTP/1.1\r\n")
    assert b"\r\nAuthorization: Bearer k\r\n" in heads[0]
    assert b"\r\nHost: 127.0.0.1:" in heads[0] and b"\r\nContent-Length: 7\r\n" in heads[0]


async def test_a_chunked_answer_is_read_whole_and_its_connection_reused() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            for piece in (b'{"a":', b'"bc"}'):
                writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                await writer.drain()
                await asyncio.sleep(0.01)
            writer.write(b"0\r\n\r\n")

    assert await twice(handler) == ([b'{"a":"bc"}'] * 2, 1)


async def test_an_informational_answer_is_skipped_for_the_one_that_follows() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            _, body = await read_request(reader)
            writer.write(b"HTTP/1.1 103 Early Hints\r\nLink: </x>; rel=preload\r\n\r\n")
            await writer.drain()
            writer.write(answer(body, b"X-Real: yes"))

    async with serving(handler) as (server, url):
        p = pool(url)
        resp = await p.request("POST", "/chat/completions", b"{}")
        assert (resp.status, resp.headers.get("x-real"), "link" in resp.headers) == (
            200, "yes", False)
        assert await resp.read() == b"{}"
        resp.release()
        assert await call(p, b"again") == (200, b"again")
        await p.aclose()
    assert server.connections == 1


async def test_an_answer_ending_at_the_close_is_read_whole_and_not_reused() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n{\"all\": ")
        await writer.drain()
        writer.write(b"\"of it\"}")

    assert await twice(handler) == ([b'{"all": "of it"}'] * 2, 2)


async def test_a_connection_the_server_closed_while_idle_is_not_reused() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        _, body = await read_request(reader)
        writer.write(answer(body))  # keep-alive by default, then closed (uvicorn's 5 s)
        await writer.drain()

    # The pause lets the server's close reach the idle connection first.
    assert await twice(handler, pause_s=0.05) == ([b"1", b"2"], 2)


async def test_an_answer_cut_short_is_disconnected_and_the_next_call_gets_its_own() -> None:
    calls = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal calls
        while True:
            _, body = await read_request(reader)
            calls += 1
            if calls == 1:
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"half")
                await writer.drain()
                return  # closed mid-body
            writer.write(answer(body))

    async with serving(handler) as (server, url):
        p = pool(url)
        with pytest.raises(_http.Disconnected, match="closed the connection"):
            await call(p, b"1")
        assert await call(p, b"2") == (200, b"2")
        await p.aclose()
    assert server.connections == 2


async def test_a_call_cancelled_mid_answer_never_hands_its_bytes_to_the_next() -> None:
    release = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            _, body = await read_request(reader)
            if body == b"slow":  # the head and a part, the rest once the caller gave up
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\n12345")
                await writer.drain()
                await release.wait()
                writer.write(b"678901234567890")
            else:
                writer.write(answer(body))
            await writer.drain()

    async with serving(handler) as (server, url):
        p = pool(url)
        slow = asyncio.ensure_future(call(p, b"slow"))
        await asyncio.sleep(0.05)
        slow.cancel()
        with pytest.raises(asyncio.CancelledError):
            await slow
        release.set()
        assert await call(p, b"next") == (200, b"next")
        await p.aclose()
    assert server.connections == 2  # the cancelled call's connection was dropped


async def test_silence_is_a_read_timeout() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.sleep(30)

    async with serving(handler) as (_, url):
        p = pool(url, read_timeout_s=0.2)
        with pytest.raises(_http.ReadTimeout):
            await call(p, b"{}")
        await p.aclose()


async def test_garbage_is_a_protocol_error() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
        await asyncio.sleep(1)

    async with serving(handler) as (_, url):
        p = pool(url)
        with pytest.raises(_http.ProtocolError, match="malformed HTTP response"):
            await call(p, b"{}")
        await p.aclose()


async def test_nothing_listening_is_a_connect_error() -> None:
    async with serving(echo_forever) as (_, url):
        pass  # closed: its port refuses now
    p = pool(url)
    with pytest.raises(_http.ConnectError, match=r"cannot connect to 127\.0\.0\.1"):
        await call(p, b"{}")


async def test_at_most_limit_requests_are_under_way_at_once() -> None:
    busy = most = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal busy, most
        while True:
            _, body = await read_request(reader)
            busy += 1
            most = max(most, busy)
            await asyncio.sleep(0.02)
            busy -= 1
            writer.write(answer(body))

    async with serving(handler) as (server, url):
        p = pool(url, limit=2)
        got = await asyncio.gather(*(call(p, b"%d" % i) for i in range(6)))
        await p.aclose()
    assert got == [(200, b"%d" % i) for i in range(6)]
    assert most == 2 and server.connections == 2


async def test_a_stream_comes_line_by_line_however_the_bytes_are_split() -> None:
    events = b'data: {"a": 1}\n\ndata: {"b": 2}\n\ndata: [DONE]\n\n'

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")
        for i in range(0, len(events), 7):  # pieces that split lines anywhere
            piece = events[i:i + 7]
            writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            await writer.drain()
            await asyncio.sleep(0.002)
        writer.write(b"0\r\n\r\n")

    async with serving(handler) as (_, url):
        p = pool(url)
        resp = await p.request("POST", "/chat/completions", b"{}")
        lines = [line async for line in resp.lines()]
        resp.release()
        await p.aclose()
    assert b"".join(lines) == events
    assert [x for x in lines if x.strip()] == [
        b'data: {"a": 1}\n', b'data: {"b": 2}\n', b"data: [DONE]\n"]


def _certificate(tmp: Path) -> tuple[Path, Path]:
    """A self-signed certificate for localhost (openssl, as a test CA would issue one)."""
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


async def test_https_verifies_the_server_s_certificate(tmp_path: Path) -> None:
    cert, key = _certificate(tmp_path)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    async with serving(echo_forever, server_ctx) as (server, url):
        untrusted = pool(url)  # the system's CAs: a self-signed certificate is refused
        with pytest.raises(_http.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await call(untrusted, b"{}")
        trusted = pool(url, ssl_context=ssl.create_default_context(cafile=str(cert)))
        assert await call(trusted, b'{"tls":1}') == (200, b'{"tls":1}')
        assert await call(trusted, b'{"tls":2}') == (200, b'{"tls":2}')
        await trusted.aclose()
    assert server.connections == 1  # the refused handshake never got served; TLS kept alive
