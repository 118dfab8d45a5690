"""OpenAI's wire format for the gateway: request bodies checked and split into what the router
takes, error bodies, and the answers (JSON, or server-sent events)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from omium.errors import (
    AllBackendsFailedError,
    InsufficientCreditsError,
    LLMConfigError,
    LLMRequestError,
    NoLLMBackendError,
    UnknownTenantError,
)
from omium.llm.pricing import Usage

# What the router sets itself; every other field of a request goes to the backend unchanged
# (tools, response_format, stop, top_p, seed, user, ...).
_ROUTER_KEYS = frozenset({"model", "messages", "prompt", "stream", "stream_options",
                          "max_tokens", "temperature"})
CHAT, TEXT = "chat", "text"
_CHUNK_OBJECT = {CHAT: "chat.completion.chunk", TEXT: "text_completion"}


class GatewayError(Exception):
    """An answer in OpenAI's error shape: ``{"error": {message, type, code, param}}``."""

    def __init__(self, status: int, message: str, *, type_: str = "invalid_request_error",
                 code: str | None = None, param: str | None = None,
                 headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
        super().__init__(message)
        self.status, self.type, self.code, self.param = status, type_, code, param
        self.headers = headers

    def body(self) -> dict[str, Any]:
        return {"error": {"message": str(self), "type": self.type, "code": self.code,
                          "param": self.param}}


def _bad(message: str, param: str | None = None, code: str = "invalid_value") -> GatewayError:
    return GatewayError(400, message, code=code, param=param)


@dataclass
class ChatRequest:
    kind: str  # CHAT | TEXT
    model: str
    payload: Any  # the messages, or the prompt
    max_tokens: int | None
    temperature: float | None
    stream: bool
    include_usage: bool
    extra: dict[str, Any]


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_request(kind: str, raw: bytes) -> ChatRequest:
    """A request body checked as far as the router needs it (the backend checks the rest)."""
    try:
        body = json.loads(raw, parse_constant=_no_constant)
    except RecursionError:
        raise _bad("the request body is nested too deeply", code="invalid_json") from None
    except ValueError as err:  # not JSON, not UTF-8, NaN/Infinity
        raise _bad(f"the request body is not valid JSON: {err}", code="invalid_json") from None
    if not isinstance(body, dict):
        raise _bad("the request body must be a JSON object", code="invalid_json")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _bad("you must provide a model parameter (GET /v1/models lists them)", "model",
                   "missing_required_parameter" if model is None else "invalid_value")
    if kind == CHAT:
        payload = body.get("messages")
        if not isinstance(payload, list) or not payload or not all(
                isinstance(m, dict) and isinstance(m.get("role"), str) for m in payload):
            raise _bad("messages must be a non-empty array of objects, each with a role",
                       "messages")
    else:
        payload = body.get("prompt")
        if not (isinstance(payload, str) or (isinstance(payload, list) and payload)):
            raise _bad("prompt must be a string or a non-empty array", "prompt")
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise _bad("stream must be true or false", "stream")
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise _bad("stream_options must be an object", "stream_options")
    max_tokens = body.get("max_tokens")
    if max_tokens is not None and (type(max_tokens) is not int or max_tokens < 1):
        raise _bad("max_tokens must be an integer >= 1", "max_tokens")
    temperature = body.get("temperature")
    if temperature is not None and (isinstance(temperature, bool) or not isinstance(
            temperature, int | float) or not 0 <= temperature <= 2):
        raise _bad("temperature must be a number between 0 and 2", "temperature")
    return ChatRequest(kind, model, payload, max_tokens, temperature, bool(stream),
                       bool(options and options.get("include_usage") is True),
                       {k: v for k, v in body.items() if k not in _ROUTER_KEYS})


def llm_failure(err: Exception) -> GatewayError | None:
    """The OpenAI-shaped answer to what the router raised; None for anything unexpected."""
    if isinstance(err, InsufficientCreditsError):
        return GatewayError(402, str(err), type_="insufficient_quota", code="insufficient_quota")
    if isinstance(err, UnknownTenantError):
        return GatewayError(401, str(err), code="invalid_api_key")
    if isinstance(err, LLMRequestError):
        if err.backend == "router":  # no configured backend serves the model asked for
            return GatewayError(404, f"the model does not exist here: {err}",
                                code="model_not_found", param="model")
        if err.status in (401, 403) or not 400 <= err.status < 500:
            # The backend refused Omium's credentials: not the client's key at fault.
            return GatewayError(502, str(err), type_="server_error", code="backend_refused")
        upstream = err.body.get("error") if isinstance(err.body, dict) else None
        upstream = upstream if isinstance(upstream, dict) else {}
        return GatewayError(err.status, str(err), type_=str(upstream.get("type") or
                                                            "invalid_request_error"),
                            code=upstream.get("code"), param=upstream.get("param"))
    if isinstance(err, AllBackendsFailedError):
        # Every circuit open: nothing was even tried (unavailable); else each one failed.
        skipped = bool(err.errors) and all(e.startswith("circuit open")
                                           for e in err.errors.values())
        return GatewayError(503 if skipped else 502, str(err), type_="server_error",
                            code="backends_unavailable" if skipped else "backends_failed")
    if isinstance(err, NoLLMBackendError | LLMConfigError):
        return GatewayError(503, str(err), type_="server_error", code="no_backend")
    return None


def usage_json(usage: Usage) -> dict[str, Any]:
    out: dict[str, Any] = {"prompt_tokens": usage.prompt_tokens,
                           "completion_tokens": usage.completion_tokens,
                           "total_tokens": usage.total_tokens}
    if usage.cached_tokens:
        out["prompt_tokens_details"] = {"cached_tokens": usage.cached_tokens}
    return out


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def sse(obj: Any) -> bytes:
    return b"data: " + dumps(obj) + b"\n\n"


SSE_DONE = b"data: [DONE]\n\n"


def client_chunk(chunk: dict[str, Any], include_usage: bool) -> dict[str, Any] | None:
    """A backend's chunk as this client asked for it: the router always asks the backend for
    usage (to bill it); a client that did not gets none, and no usage-only chunk."""
    if include_usage or "usage" not in chunk:
        return chunk
    if not chunk.get("choices"):
        return None
    return {k: v for k, v in chunk.items() if k != "usage"}


def usage_chunk(kind: str, last: dict[str, Any] | None, model: str,
                usage: Usage) -> dict[str, Any]:
    """The final usage chunk, for a backend that streamed none (tokens counted by Omium)."""
    last = last or {}
    return {"id": last.get("id", "omium"), "object": _CHUNK_OBJECT[kind],
            "created": last.get("created", 0), "model": last.get("model", model),
            "choices": [], "usage": usage_json(usage)}
