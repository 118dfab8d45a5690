"""Behaviours, per-request directives and response bodies for :mod:`omium.testing.fake_server`.

Directive grammar (whitespace-delimited tokens in the last message's content, or the prompt):

=====================  ==========================================================
``#fail``              kind ``fail`` (status from the script/default, 500 unless set)
``#status=N``          kind ``fail`` with HTTP status ``N`` (100-599)
``#close``             kind ``close``: drop the connection without a response
``#stall``             kind ``stall`` (``stall_s`` from the script/default)
``#stall=S``           kind ``stall`` sleeping ``S`` seconds (float >= 0)
``#no-usage``          omit usage (no ``usage`` key; no usage chunk when streaming)
``#usage=P/C``         report ``P`` prompt and ``C`` completion tokens (ints >= 0)
``#cached=N``          report ``prompt_tokens_details.cached_tokens = N``
``#reply=TEXT``        answer exactly ``TEXT`` (no spaces; may be empty)
``#delay=S``           sleep ``S`` seconds (float >= 0) before any response
=====================  ==========================================================

A token must be whitespace-delimited and written exactly as above (lower case). Other
``#words`` are ordinary text. A known directive with a malformed value (``#status=abc``,
``#fail=1``) makes the server answer 400 with code ``bad_directive`` so typos never pass
silently. Each directive overrides only its own fields; later tokens win over earlier ones.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any, Literal

Kind = Literal["answer", "fail", "close", "stall"]
KINDS: frozenset[str] = frozenset({"answer", "fail", "close", "stall"})

_DIRECTIVE = re.compile(r"(?<!\S)#([a-z][a-z-]*)(?:=(\S*))?(?!\S)")
_NAMES = frozenset(
    {"fail", "status", "close", "stall", "no-usage", "usage", "cached", "reply", "delay"}
)
_FLAGS = frozenset({"fail", "close", "no-usage"})  # directives that take no value
_REPLY_WORDS = 32  # the default reply echoes at most this many words of the prompt

_ERROR_KINDS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "bad_request"),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "permission_denied"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
}


@dataclass
class Behaviour:
    """What the fake server does with one completion request."""

    kind: Kind = "answer"
    status: int = 500  # for kind "fail" (e.g. 429, 400, 401, 503)
    reply: str | None = None  # default: a deterministic reply derived from the prompt
    prompt_tokens: int | None = None  # default: words in all messages' content / the prompt
    completion_tokens: int | None = None  # default: words in the reply
    cached_tokens: int | None = None  # reported as usage.prompt_tokens_details.cached_tokens
    omit_usage: bool = False
    stall_s: float = 30.0  # for kind "stall": sleep this long before answering
    delay_s: float = 0.0  # added latency before any response

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown behaviour kind {self.kind!r}; expected one of {KINDS}")


class BadRequest(ValueError):
    """The request cannot be served; the server answers 400 with ``code``."""

    def __init__(self, message: str, code: str = "bad_request") -> None:
        super().__init__(message)
        self.code = code


def as_behaviour(item: Behaviour | str) -> Behaviour:
    """A script entry as a :class:`Behaviour` (a ``str`` names the kind)."""
    return item if isinstance(item, Behaviour) else Behaviour(kind=item)  # type: ignore[arg-type]


def _number(name: str, value: str, cast: type[int] | type[float]) -> Any:
    try:
        number = cast(value)
    except ValueError:
        raise BadRequest(f"directive #{name}={value}: not a number", "bad_directive") from None
    if number < 0 or number != number:  # negative or NaN
        raise BadRequest(f"directive #{name}={value}: must be >= 0", "bad_directive")
    return number


def _apply_one(changes: dict[str, Any], name: str, value: str | None) -> None:
    if name in _FLAGS and value is not None:
        raise BadRequest(f"directive #{name} takes no value", "bad_directive")
    if name not in _FLAGS and name not in ("stall", "reply") and not value:
        raise BadRequest(f"directive #{name} needs a value (#{name}=...)", "bad_directive")
    if name == "fail":
        changes["kind"] = "fail"
    elif name == "close":
        changes["kind"] = "close"
    elif name == "no-usage":
        changes["omit_usage"] = True
    elif name == "status":
        status = _number(name, value or "", int)
        if not 100 <= status <= 599:
            raise BadRequest(f"directive #status={value}: not an HTTP status", "bad_directive")
        changes.update(kind="fail", status=status)
    elif name == "stall":
        changes["kind"] = "stall"
        if value is not None:
            changes["stall_s"] = _number(name, value, float)
    elif name == "usage":
        prompt, sep, completion = (value or "").partition("/")
        if not sep:
            raise BadRequest(f"directive #usage={value}: expected P/C", "bad_directive")
        changes["prompt_tokens"] = _number(name, prompt, int)
        changes["completion_tokens"] = _number(name, completion, int)
    elif name == "cached":
        changes["cached_tokens"] = _number(name, value or "", int)
    elif name == "reply":
        changes["reply"] = value or ""
    elif name == "delay":
        changes["delay_s"] = _number(name, value or "", float)


def apply_directives(base: Behaviour, text: str) -> Behaviour:
    """``base`` with every directive in ``text`` applied (``base`` itself is not changed)."""
    if "#" not in text:
        return base
    changes: dict[str, Any] = {}
    for match in _DIRECTIVE.finditer(text):
        if match.group(1) in _NAMES:
            _apply_one(changes, match.group(1), match.group(2))
    return replace(base, **changes) if changes else base


def strip_directives(text: str) -> str:
    """``text`` without its directive tokens, whitespace collapsed."""
    if "#" in text:
        text = _DIRECTIVE.sub(lambda m: "" if m.group(1) in _NAMES else m.group(0), text)
    return " ".join(text.split())


def content_text(content: Any) -> str:
    """The text of a message's ``content``: a string, or the text of its content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text") for p in content if isinstance(p, dict)]
        return " ".join(p for p in parts if isinstance(p, str))
    return ""


def read_prompt(body: dict[str, Any], *, chat: bool) -> tuple[int, str]:
    """``(words in the whole input, text of the last message or the prompt)``."""
    if chat:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise BadRequest("'messages' must be a non-empty list")
        texts = [content_text(m.get("content")) if isinstance(m, dict) else "" for m in messages]
        return sum(len(t.split()) for t in texts), texts[-1]
    prompt = body.get("prompt")
    if isinstance(prompt, list) and all(isinstance(p, str) for p in prompt):
        prompt = " ".join(prompt)
    if not isinstance(prompt, str):
        raise BadRequest("'prompt' must be a string or a list of strings")
    return len(prompt.split()), prompt


def default_reply(last_text: str) -> str:
    """The deterministic reply: ``echo:`` and the first words of the prompt, sans directives."""
    words = strip_directives(last_text).split()[:_REPLY_WORDS]
    return " ".join(["echo:", *words])


def usage_of(b: Behaviour, input_words: int, reply: str) -> dict[str, Any]:
    """The ``usage`` object the behaviour reports for ``reply``."""
    prompt = input_words if b.prompt_tokens is None else b.prompt_tokens
    completion = len(reply.split()) if b.completion_tokens is None else b.completion_tokens
    usage: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    if b.cached_tokens is not None:
        usage["prompt_tokens_details"] = {"cached_tokens": b.cached_tokens}
    return usage


def error_body(status: int, message: str, code: str | None = None) -> dict[str, Any]:
    """An OpenAI-style error object for ``status``."""
    kind, default_code = _ERROR_KINDS.get(status, ("server_error", f"http_{status}"))
    return {"error": {"message": message, "type": kind, "code": code or default_code}}


def stream_pieces(reply: str) -> list[str]:
    """``reply`` cut into one piece per word; the pieces concatenate back to ``reply``."""
    pieces = re.findall(r"\s*\S+", reply)
    if not pieces:
        return [reply]
    tail = len(reply) - len(reply.rstrip())
    if tail:
        pieces[-1] += reply[-tail:]
    return pieces


def stream_events(
    head: dict[str, Any], reply: str, usage: dict[str, Any] | None, *, chat: bool
) -> list[dict[str, Any]]:
    """The streamed chunks: (chat: a role chunk), one chunk per word, a finish chunk, and the
    usage chunk (``choices: []``) when ``usage`` is given; ``[DONE]`` is the caller's."""
    head = {**head, "object": "chat.completion.chunk" if chat else "text_completion"}
    extra: dict[str, Any] = {"usage": None} if usage is not None else {}

    def event(delta: dict[str, Any] | None, text: str = "", finish: str | None = None) -> dict:
        if chat:
            choice = {"index": 0, "delta": delta or {}, "finish_reason": finish}
        else:
            choice = {"index": 0, "text": text, "finish_reason": finish}
        return {**head, "choices": [choice], **extra}

    events = [event({"role": "assistant", "content": ""})] if chat else []
    events.extend(event({"content": p}, p) for p in stream_pieces(reply))
    events.append(event(None, finish="stop"))
    if usage is not None:
        events.append({**head, "choices": [], "usage": usage})
    return events
