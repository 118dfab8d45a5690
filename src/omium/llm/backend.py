"""One OpenAI-compatible server: its pooled keep-alive connections (``omium.llm._http``),
requests, streaming, and the classification of what went wrong."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from omium.errors import LLMRequestError
from omium.llm import _http
from omium.llm.config import BackendConfig
from omium.llm.pricing import Usage

# Statuses that say "this backend cannot serve now" (try the next one); any other 4xx is the
# request's own fault and goes back to the caller without fallback.
RETRYABLE_4XX = {408, 409, 425, 429}


# A streamed chunk as the server sent it (the gateway forwards each one to its own client).
OnChunk = Callable[[dict[str, Any]], None]


def carries_output(chunk: dict[str, Any]) -> bool:
    """Whether a streamed chunk holds part of the answer (text or a tool call), not only a
    role or the usage: once one reached the caller, another backend would repeat it."""
    for choice in chunk.get("choices") or []:
        delta = choice.get("delta") or {}
        if delta.get("content") or delta.get("tool_calls") or delta.get("function_call") \
                or choice.get("text"):
            return True
    return False


class BackendFailure(Exception):
    """A failure that counts against the backend and moves on to the next one."""

    def __init__(self, kind: str, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.kind, self.status = kind, status


@dataclass
class Completion:
    text: str
    model: str
    usage: Usage | None  # as the server reported it; None when it reported nothing
    raw: dict[str, Any] | None  # the server's JSON answer; None when streamed (chunks)
    body: bytes | None = None  # that answer as the server sent it (a gateway forwards it)


def _usage(data: dict[str, Any] | None) -> Usage | None:
    if not isinstance(data, dict) or "prompt_tokens" not in data:
        return None
    details = data.get("prompt_tokens_details") or {}
    return Usage(int(data["prompt_tokens"]), int(data.get("completion_tokens") or 0),
                 int(details.get("cached_tokens") or 0))


def _error_message(body: Any) -> str:
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return str(body["error"].get("message") or body["error"])
    return str(body)[:300]


class Backend:
    def __init__(self, cfg: BackendConfig) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self._pool: _http.Pool | None = None

    def _client(self) -> _http.Pool:
        if self._pool is None:
            headers = {"Content-Type": "application/json"}
            if key := self.cfg.api_key:
                headers["Authorization"] = f"Bearer {key}"
            self._pool = _http.Pool(self.cfg.base_url, limit=self.cfg.max_concurrency,
                                    connect_timeout_s=self.cfg.connect_timeout_s,
                                    read_timeout_s=self.cfg.read_timeout_s, headers=headers)
        return self._pool

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.aclose()
            self._pool = None

    async def request(self, path: str, body: dict[str, Any],
                      on_delta: Callable[[str], None] | None = None,
                      on_chunk: OnChunk | None = None) -> Completion:
        """POST to ``/chat/completions`` or ``/completions``; raises BackendFailure or
        LLMRequestError."""
        try:
            data = json.dumps(body, separators=(",", ":")).encode()
            resp = await self._client().request("POST", path, data)
            try:
                if resp.status != 200:
                    await self._raise_for(resp)
                if body.get("stream"):
                    return await self._read_stream(resp, body, on_delta, on_chunk)
                raw = await resp.read()
                # A 200 without a usable answer is the backend's failure too: fall back.
                completion = self._parse(json.loads(raw), body)
                completion.body = raw
                return completion
            finally:
                resp.release()
        except (BackendFailure, LLMRequestError):
            raise
        except _http.ReadTimeout as err:
            raise BackendFailure("timeout", f"timed out: {err}") from None
        except _http.ProtocolError as err:
            raise BackendFailure("protocol", str(err)) from None
        except _http.HTTPError as err:
            raise BackendFailure("connection", f"{type(err).__name__}: {err}") from None
        except (ValueError, KeyError, TypeError, IndexError, AttributeError) as err:
            raise BackendFailure("protocol", f"malformed response: {err!r}") from None

    async def _raise_for(self, resp: _http.Response) -> None:
        raw = await resp.read()
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = raw.decode("utf-8", "replace")[:300]
        message = _error_message(body)
        if resp.status >= 500 or resp.status in RETRYABLE_4XX:
            raise BackendFailure("status", f"HTTP {resp.status}: {message}", resp.status)
        raise LLMRequestError(message, backend=self.name, status=resp.status, body=body)

    def _parse(self, data: dict[str, Any], body: dict[str, Any]) -> Completion:
        choice = data["choices"][0]
        text = choice["message"].get("content") if "message" in choice else choice.get("text")
        return Completion(text or "", data.get("model") or body["model"],
                          _usage(data.get("usage")), data)

    async def _read_stream(self, resp: _http.Response, body: dict[str, Any],
                           on_delta: Callable[[str], None] | None,
                           on_chunk: OnChunk | None) -> Completion:
        parts: list[str] = []
        usage: Usage | None = None
        model = body["model"]
        async for raw_line in resp.lines():
            line = raw_line.strip()
            if not line.startswith(b"data:"):
                continue
            payload = line[5:].strip()
            if payload == b"[DONE]":
                break
            chunk = json.loads(payload)
            model = chunk.get("model") or model
            usage = _usage(chunk.get("usage")) or usage
            if on_chunk is not None:
                on_chunk(chunk)
            for choice in chunk.get("choices") or []:
                piece = (choice.get("delta") or {}).get("content") or choice.get("text") or ""
                if piece:
                    parts.append(piece)
                    if on_delta is not None:
                        on_delta(piece)
        else:
            raise BackendFailure("connection", "stream ended before [DONE]")
        return Completion("".join(parts), model, usage, None)

    async def probe(self) -> float:
        """Seconds for GET /models (for status displays; never used to close a circuit)."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            resp = await self._client().request("GET", "/models")
            try:
                await resp.read()
            finally:
                resp.release()
        except _http.HTTPError as err:
            raise BackendFailure("connection", f"{type(err).__name__}: {err}") from None
        if resp.status != 200:
            raise BackendFailure("status", f"HTTP {resp.status}", resp.status)
        return loop.time() - started
