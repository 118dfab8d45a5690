"""llama-cpp-python's OpenAI server, taking OpenAI's structured outputs as well:
``python -m omium.contrib.local_llm.llamacpp_server`` with ``llama_cpp.server``'s arguments.

OpenAI clients ask for a JSON answer that follows a schema with ``response_format: {type:
"json_schema", json_schema: {name, schema, strict}}`` (CrewAI does for a task with
``output_pydantic``, the openai client's ``parse()`` does). llama-cpp-python 0.3 knows the same
thing as ``{type: "json_object", schema}`` (a grammar made from the schema constrains the
tokens) and refuses the OpenAI spelling with a 500, which a router counts against the backend:
the SmolLM2 run of ``examples/research_team`` opened the local breaker that way. The
middleware here rewrites the one into the other before llama.cpp's own app sees the request;
everything else passes untouched.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

_PATHS = frozenset({"/v1/chat/completions", "/v1/completions"})


def llama_cpp_format(body: Any) -> Any:
    """The request with an OpenAI ``json_schema`` response format in llama.cpp's spelling
    (``json_object`` + ``schema``); anything else as it came."""
    if not isinstance(body, dict):
        return body
    wanted = body.get("response_format")
    if not isinstance(wanted, dict) or wanted.get("type") != "json_schema":
        return body
    spec = wanted.get("json_schema")
    schema = spec.get("schema") if isinstance(spec, dict) else None
    fmt: dict[str, Any] = {"type": "json_object"}
    if isinstance(schema, dict):
        fmt["schema"] = schema
    return {**body, "response_format": fmt}


class StructuredOutputs:
    """Rewrites ``response_format`` on the completion routes (see the module's docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] not in _PATHS:
            await self.app(scope, receive, send)
            return
        chunks = []
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client left before its body came
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        raw = b"".join(chunks)
        try:
            body = json.loads(raw)
        except ValueError:  # not JSON: llama.cpp's app answers it as it would
            rewritten = raw
        else:
            changed = llama_cpp_format(body)
            rewritten = raw if changed is body else json.dumps(changed).encode()
        headers = [(k, v) for k, v in scope["headers"] if k != b"content-length"]
        headers.append((b"content-length", str(len(rewritten)).encode()))
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": rewritten, "more_body": False}
            return await receive()

        await self.app({**scope, "headers": headers}, replay, send)


def main() -> None:
    """``python -m llama_cpp.server``'s own ``main`` (its arguments, settings and uvicorn),
    with its app wrapped in ``StructuredOutputs``."""
    from llama_cpp.server import __main__ as server

    create_app = server.create_app

    def wrapped(**kwargs: Any) -> ASGIApp:
        return StructuredOutputs(create_app(**kwargs))

    server.create_app = wrapped  # type: ignore[assignment]  # main() looks it up here
    server.main()


if __name__ == "__main__":
    main()
