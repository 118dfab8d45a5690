"""A pure ASGI middleware that refuses request bodies over a size limit with 413.

The declared ``Content-Length`` is checked before the app runs; bodies without one (chunked)
are counted as they stream in, and the request is stopped once the limit is passed.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyTooLargeError(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body exceeds {limit} bytes")


def _response(status: int, detail: str) -> tuple[Message, Message]:
    body = json.dumps({"detail": detail}, separators=(",", ":")).encode()
    start = {"type": "http.response.start", "status": status,
             "headers": [(b"content-type", b"application/json"),
                         (b"content-length", str(len(body)).encode())]}
    return start, {"type": "http.response.body", "body": body}


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.limit = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and (declared < 0 or declared > self.limit):
            status, why = ((400, "invalid Content-Length") if declared < 0 else
                           (413, f"request body exceeds {self.limit} bytes"))
            for message in _response(status, why):
                await send(message)
            return
        state: dict[str, Any] = {"received": 0, "exceeded": False, "started": False,
                                 "replaced": False}

        async def limited_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                state["received"] += len(message.get("body", b""))
                if state["received"] > self.limit:
                    state["exceeded"] = True
                    raise BodyTooLargeError(self.limit)
            return message

        async def guarded_send(message: Message) -> None:
            if state["replaced"]:
                return  # the app's own answer to an oversized body is dropped
            if message["type"] == "http.response.start":
                if state["exceeded"] and message.get("status") != 413:
                    state["replaced"] = True
                    for own in _response(413, f"request body exceeds {self.limit} bytes"):
                        await send(own)
                    return
                state["started"] = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except BodyTooLargeError:
            if state["started"] or state["replaced"]:
                raise
            for message in _response(413, f"request body exceeds {self.limit} bytes"):
                await send(message)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return -1
    return None
