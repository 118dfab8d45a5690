"""The fake OpenAI-compatible server, exercised through real sockets with aiohttp."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from omium.testing.fake_server import Behaviour, FakeOpenAIServer


@pytest.fixture
async def server() -> AsyncIterator[FakeOpenAIServer]:
    async with FakeOpenAIServer() as s:
        yield s


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def chat_body(content: str, **extra: Any) -> dict[str, Any]:
    return {"model": "m1", "messages": [{"role": "user", "content": content}], **extra}


async def chat(
    http: aiohttp.ClientSession, server: FakeOpenAIServer, content: str, **extra: Any
) -> tuple[int, dict[str, Any]]:
    url = f"{server.base_url}/chat/completions"
    async with http.post(url, json=chat_body(content, **extra)) as resp:
        return resp.status, await resp.json()


async def sse(http: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> list[Any]:
    """The decoded ``data:`` events of a streamed response (``[DONE]`` kept as a string)."""
    async with http.post(url, json=body) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        text = await resp.text()
    assert text.endswith("data: [DONE]\n\n")
    events = [e.removeprefix("data: ") for e in text.split("\n\n") if e]
    return [e if e == "[DONE]" else json.loads(e) for e in events]


async def test_answer_counts_usage_from_words(server, http) -> None:
    body = {
        "model": "m1",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "say hello world"}]},
        ],
    }
    async with http.post(f"{server.base_url}/chat/completions", json=body) as resp:
        assert resp.status == 200
        data = await resp.json()
    assert data["object"] == "chat.completion"
    assert data["model"] == "m1"
    assert data["id"] and isinstance(data["created"], int)
    choice = data["choices"][0]
    assert choice["message"] == {"role": "assistant", "content": "echo: say hello world"}
    assert choice["finish_reason"] == "stop"
    assert data["usage"] == {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9}
    assert server.requests == [body]


async def test_text_completion_endpoint(server, http) -> None:
    body = {"prompt": "one two three"}
    async with http.post(f"{server.base_url}/completions", json=body) as resp:
        data = await resp.json()
    assert data["object"] == "text_completion"
    assert data["model"] == "fake-model"  # no model in the request: the server's
    assert data["choices"][0]["text"] == "echo: one two three"
    assert data["usage"]["prompt_tokens"] == 3


async def test_script_in_order_then_default(server, http) -> None:
    server.default = Behaviour(reply="dflt")
    server.script(Behaviour(kind="fail", status=503), "answer", Behaviour(reply="third"))
    results = [await chat(http, server, "hi") for _ in range(4)]
    assert results[0][0] == 503
    assert results[1] == (200, results[1][1])
    assert results[1][1]["choices"][0]["message"]["content"] == "echo: hi"
    assert results[2][1]["choices"][0]["message"]["content"] == "third"
    assert results[3][1]["choices"][0]["message"]["content"] == "dflt"
    assert server.count == 4


async def test_directives_override_script_fields(server, http) -> None:
    server.script(Behaviour(kind="fail", status=503))
    status, data = await chat(http, server, "x #status=429")
    assert status == 429
    assert data["error"]["code"] == "rate_limit_exceeded"
    # #reply changes only the reply: a scripted failure stays a failure
    server.script(Behaviour(kind="fail", status=503))
    status, _ = await chat(http, server, "x #reply=ok")
    assert status == 503


@pytest.mark.parametrize(
    ("content", "status", "check"),
    [
        ("#fail", 500, lambda d: d["error"]["type"] == "server_error"),
        ("#status=400 please", 400, lambda d: d["error"]["type"] == "invalid_request_error"),
        ("#status=401", 401, lambda d: d["error"]["code"] == "invalid_api_key"),
        ("#no-usage hi", 200, lambda d: "usage" not in d),
        ("#usage=12/30", 200, lambda d: d["usage"]["total_tokens"] == 42),
        (
            "a b #cached=5",
            200,
            lambda d: (
                d["usage"]["prompt_tokens_details"] == {"cached_tokens": 5}
                and d["usage"]["prompt_tokens"] == 3
            ),
        ),
        ("#reply=some_text", 200, lambda d: d["choices"][0]["message"]["content"] == "some_text"),
        ("#delay=0.01 x", 200, lambda d: d["choices"][0]["message"]["content"] == "echo: x"),
        ("#stall=0.01 x", 200, lambda d: d["choices"][0]["message"]["content"] == "echo: x"),
        ("#hashtag #fail=1", 400, lambda d: d["error"]["code"] == "bad_directive"),
        ("#usage=3", 400, lambda d: d["error"]["code"] == "bad_directive"),
    ],
)
async def test_each_directive(server, http, content, status, check) -> None:
    got_status, data = await chat(http, server, content)
    assert got_status == status
    assert check(data), data


async def test_directives_only_in_last_message(server, http) -> None:
    body = {"messages": [{"role": "user", "content": "#fail"}, {"role": "user", "content": "ok"}]}
    async with http.post(f"{server.base_url}/chat/completions", json=body) as resp:
        assert resp.status == 200


async def test_close_drops_the_connection(server, http) -> None:
    server.script("close")
    with pytest.raises(aiohttp.ClientConnectionError):
        await chat(http, server, "hi")
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await chat(http, server, "#close")
    assert (await chat(http, server, "hi"))[0] == 200
    assert server.count == 3


async def test_stall_outlasts_client_timeout(server, http) -> None:
    server.script(Behaviour(kind="stall", stall_s=5))
    with pytest.raises(asyncio.TimeoutError):
        async with http.post(
            f"{server.base_url}/chat/completions",
            json=chat_body("hi"),
            timeout=aiohttp.ClientTimeout(total=0.1),
        ) as resp:
            await resp.read()
    assert server.count == 1


async def test_fail_bodies(server, http) -> None:
    server.default = Behaviour(kind="fail")
    status, data = await chat(http, server, "hi")
    assert status == 500
    assert set(data["error"]) == {"message", "type", "code"}
    server.default = Behaviour(kind="fail", status=429)
    status, data = await chat(http, server, "hi")
    assert (status, data["error"]["type"]) == (429, "requests")


async def test_invalid_json_is_400(server, http) -> None:
    url = f"{server.base_url}/chat/completions"
    async with http.post(url, data=b"{nope", headers={"Content-Type": "application/json"}) as r:
        assert r.status == 400
        assert "error" in await r.json()
    async with http.post(url, json={"messages": []}) as r:
        assert r.status == 400
    assert server.count == 2
    assert server.requests == [{"messages": []}]


async def test_stream_chat_reassembles_with_usage_only_when_asked(server, http) -> None:
    url = f"{server.base_url}/chat/completions"
    body = chat_body("alpha beta gamma", stream=True)
    events = await sse(http, url, body)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert all("usage" not in c for c in chunks)
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text == "echo: alpha beta gamma"
    assert len([c for c in chunks if c["choices"][0]["delta"].get("content")]) == 4

    events = await sse(http, url, {**body, "stream_options": {"include_usage": True}})
    usage_chunk = events[-2]
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"] == {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
    assert all(c["usage"] is None for c in events[:-2])

    body = chat_body("#no-usage x", stream=True, stream_options={"include_usage": True})
    events = await sse(http, url, body)
    assert all(c == "[DONE]" or c["choices"] for c in events)


async def test_stream_text_completion(server, http) -> None:
    body = {"prompt": "#reply=done", "stream": True, "stream_options": {"include_usage": True}}
    events = await sse(http, f"{server.base_url}/completions", body)
    assert "".join(c["choices"][0]["text"] for c in events[:-2]) == "done"
    assert events[-2]["usage"]["completion_tokens"] == 1


async def test_health_and_models(server, http) -> None:
    async with http.get(server.base_url.removesuffix("/v1") + "/health") as resp:
        assert (resp.status, await resp.json()) == (200, {"status": "ok"})
    server.health_status = 503
    async with http.get(server.base_url.removesuffix("/v1") + "/health") as resp:
        assert resp.status == 503
    # healthy-looking but failing: health says 200 while completions fail
    server.health_status = 200
    server.default = Behaviour(kind="fail")
    async with http.get(server.base_url.removesuffix("/v1") + "/health") as resp:
        assert resp.status == 200
    assert (await chat(http, server, "hi"))[0] == 500
    async with http.get(f"{server.base_url}/models") as resp:
        data = await resp.json()
    assert [m["id"] for m in data["data"]] == ["fake-model"]


async def test_count_includes_every_outcome(server, http) -> None:
    server.script("fail", "close", Behaviour(kind="stall", stall_s=5), "answer")
    await chat(http, server, "a")
    with pytest.raises(aiohttp.ClientConnectionError):
        await chat(http, server, "b")
    with pytest.raises(asyncio.TimeoutError):
        url = f"{server.base_url}/chat/completions"
        timeout = aiohttp.ClientTimeout(total=0.05)
        async with http.post(url, json=chat_body("c"), timeout=timeout) as resp:
            await resp.read()
    await chat(http, server, "d")
    assert server.count == 4
    assert [r["messages"][0]["content"] for r in server.requests] == ["a", "b", "c", "d"]


async def test_concurrent_calls_vary_by_directive(server, http) -> None:
    results = await asyncio.gather(
        *(chat(http, server, f"n{i} #status=429" if i % 2 else f"n{i}") for i in range(10))
    )
    assert [s for s, _ in results] == [200, 429] * 5


def test_bad_script_kind_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown behaviour kind"):
        FakeOpenAIServer().script("explode")


async def test_runs_as_a_process(http) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "omium.testing.fake_server", "--port", "0", "--model", "pm",
        "--reply", "the same answer",
        stdout=asyncio.subprocess.PIPE,
        env={k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"},
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 10)).decode().strip()
        assert line.startswith("ready http://127.0.0.1:")
        base_url = line.removeprefix("ready ")
        async with http.post(f"{base_url}/chat/completions", json={"messages": []}) as resp:
            assert resp.status == 400
        async with http.get(f"{base_url}/models") as resp:
            assert (await resp.json())["data"][0]["id"] == "pm"
        async with http.post(f"{base_url}/chat/completions", json={"messages": [
                {"role": "user", "content": "anything"}]}) as resp:  # --reply, not an echo
            assert (await resp.json())["choices"][0]["message"]["content"] == "the same answer"
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 5) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_stop_drops_stalled_requests_quickly(http) -> None:
    server = FakeOpenAIServer()
    await server.start()
    server.default = Behaviour(kind="stall", stall_s=30)
    call = asyncio.ensure_future(chat(http, server, "hi"))
    for _ in range(200):  # until the request is in (stalling)
        if server.count:
            break
        await asyncio.sleep(0.005)
    await asyncio.wait_for(server.stop(), 0.5)
    with pytest.raises(aiohttp.ClientConnectionError):
        await call
