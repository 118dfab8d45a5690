"""A pure ASGI middleware: JSON request bodies must be strict JSON, nested at most 64 levels.

Starlette's ``request.json()`` is ``json.loads``, which takes ``NaN`` and ``Infinity`` (not
JSON; ``NaN`` passes every ``minimum``) and raises ``RecursionError`` (a 500) near 1,000
levels. Bodies are refused here with a 422 naming the field instead.

It stays cheap (the API serves thousands of requests a second): a body is parsed here only
when it could hold a problem (it contains the text ``NaN``/``Infinity``, or more brackets
than the depth limit); every other body passes untouched and is parsed once, by FastAPI.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from omium.errors import FieldProblem
from omium.jsonsafe import MAX_JSON_DEPTH, json_problem

_METHODS = frozenset({"POST", "PUT", "PATCH"})


def _is_json(scope: Scope) -> bool:
    for name, value in scope.get("headers", ()):
        if name == b"content-type":
            media = value.split(b";", 1)[0].strip().lower()
            return media == b"application/json" or media.endswith(b"+json")
    return True  # no content type: FastAPI may still read it as JSON


def body_problem(body: bytes) -> FieldProblem | None:
    """Why a JSON body must be refused, or None (also for text that is not JSON at all:
    FastAPI answers that one). Each top-level field of an object body (``inputs``,
    ``workflow``) may nest ``MAX_JSON_DEPTH`` levels; any other body as a whole."""
    suspicious = b"NaN" in body or b"Infinity" in body
    if not suspicious and body.count(b"[") + body.count(b"{") <= MAX_JSON_DEPTH:
        return None  # cannot hold a constant or be too deep: the common case, no parsing
    try:
        value = json.loads(body)
    except RecursionError:
        return FieldProblem("", f"nested deeper than {MAX_JSON_DEPTH} levels")
    except ValueError:  # malformed (or not UTF-8): FastAPI's own 422 says where
        return None
    if isinstance(value, dict):
        for key, field in value.items():
            if (problem := json_problem(field, str(key))) is not None:
                return problem
        return None
    return json_problem(value)


def _refusal(problem: FieldProblem) -> tuple[Message, Message]:
    loc = ["body", problem.path] if problem.path else ["body"]
    body = json.dumps({"detail": [{"loc": loc, "msg": problem.reason, "type": "json_invalid"}]},
                      separators=(",", ":")).encode()
    start = {"type": "http.response.start", "status": 422,
             "headers": [(b"content-type", b"application/json"),
                         (b"content-length", str(len(body)).encode())]}
    return start, {"type": "http.response.body", "body": body}


class StrictJSONMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _METHODS or not _is_json(scope):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:  # the size limit is enforced outside, by BodyLimitMiddleware
            message = await receive()
            if message["type"] != "http.request":  # the client left: let the app see it
                await self.app(scope, _replay([], message, receive), send)
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if (problem := body_problem(body)) is not None:
            for reply in _refusal(problem):
                await send(reply)
            return
        await self.app(scope, _replay([body], None, receive), send)


def _replay(bodies: list[bytes], last: Message | None, receive: Receive) -> Receive:
    """A ``receive`` that hands over what was already read, then the client's own."""
    pending: list[Any] = [{"type": "http.request", "body": b, "more_body": False}
                          for b in bodies]
    if last is not None:
        pending.append(last)

    async def replayed() -> Message:
        if pending:
            return pending.pop(0)  # type: ignore[no-any-return]
        return await receive()

    return replayed
