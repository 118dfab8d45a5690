"""JSON Schema (Draft 2020-12) for user data, decided by ONE engine: jsonschema-rs.

Verdicts and error messages both come from jsonschema-rs, so what is valid never depends on
which library was asked (``"^[a-z]+$"`` refuses ``"abc\\n"``, everywhere). Its ``pattern`` and
``patternProperties`` run on the Rust ``regex`` crate, which matches in linear time: no
pattern can make a check backtrack for seconds on the event loop. A pattern that engine
cannot compile (lookaround, backreferences) makes the schema invalid, named at registration.

``$ref`` resolves inside the schema and to the bundled meta-schemas only: nothing is fetched
(no network, no local files). The Python ``jsonschema`` library is never run on data; its
``ValidationError`` is kept as the error type callers know (``json_path``, ``message``).
"""

from __future__ import annotations

import json
from collections import deque
from typing import Any
from urllib.parse import unquote

import jsonschema_rs
from jsonschema.exceptions import ValidationError

from omium.errors import SchemaCompileError
from omium.jsonsafe import MAX_JSON_DEPTH, json_problem

# jsonschema's notion of weak matches: a failed anyOf/oneOf says less than what it contains.
_WEAK = frozenset({"anyOf", "oneOf"})
_MAX_ERRORS_SCANNED = 64  # the best error is picked among the first ones, not all of them


def _no_retrieval(uri: str) -> Any:
    raise ValueError(f"only references inside the schema are allowed, not {uri!r}")


def _build(schema: Any) -> Any:
    try:
        return jsonschema_rs.Draft202012Validator(
            schema, pattern_options=jsonschema_rs.RegexOptions(), retriever=_no_retrieval,
            validate_formats=False)  # format is an annotation in 2020-12, as before
    except jsonschema_rs.ValidationError as err:
        raise SchemaCompileError("/".join(map(str, err.instance_path)), err.message) from None
    except (ValueError, TypeError) as err:  # a value it cannot read; "Recursion limit reached"
        raise SchemaCompileError("", str(err)) from None


def _pointer(ref: str) -> tuple[str, ...] | None:
    """The JSON Pointer tokens of a reference into this schema (``#``, ``#/$defs/a``), or
    None for any other reference (an anchor, another document)."""
    if ref == "#":
        return ()
    if not ref.startswith("#/"):
        return None
    return tuple(unquote(t).replace("~1", "/").replace("~0", "~") for t in ref[2:].split("/"))


def _may_recurse(schema: Any) -> bool:
    """Whether validation can follow the data deeper than the schema itself is nested:
    only through a cycle of references (``{"$ref": "#"}``, a ``$defs`` entry reaching itself).
    Such schemas get the data's depth checked before each validation: a recursive ``$ref``
    over very deep data overflows jsonschema-rs's stack. References this cannot follow
    (anchors, ``$id``, ``$dynamicRef``) count as recursive: the check costs time, not safety.
    """
    refs: list[tuple[tuple[str, ...], tuple[str, ...]]] = []  # (where, target)
    stack: list[tuple[Any, tuple[str, ...]]] = [(schema, ())]
    while stack:
        node, at = stack.pop()
        if isinstance(node, dict):
            if "$dynamicRef" in node or "$recursiveRef" in node or (at and "$id" in node):
                return True
            ref = node.get("$ref")
            if isinstance(ref, str):
                target = _pointer(ref)
                if target is None:
                    return True
                refs.append((at, target))
            stack.extend((v, (*at, str(k))) for k, v in node.items()
                         if isinstance(v, dict | list))
        elif isinstance(node, list):
            stack.extend((v, (*at, str(i))) for i, v in enumerate(node)
                         if isinstance(v, dict | list))
    targets = {target for _, target in refs}
    # Validating a target's subschema may meet every reference lying inside it.
    edges: dict[tuple[str, ...], set[tuple[str, ...]]] = {t: set() for t in targets}
    for where, target in refs:
        for k in range(len(where) + 1):
            if where[:k] in edges:
                edges[where[:k]].add(target)
    return _has_cycle(edges)


def _has_cycle(edges: dict[tuple[str, ...], set[tuple[str, ...]]]) -> bool:
    state: dict[tuple[str, ...], int] = {}  # 1 = on the current path, 2 = done
    for start in edges:
        if state.get(start):
            continue
        state[start] = 1
        path = [(start, iter(edges[start]))]
        while path:
            node, successors = path[-1]
            nxt = next(successors, None)
            if nxt is None:
                state[node] = 2
                path.pop()
            elif state.get(nxt) == 1:
                return True
            elif nxt not in state:
                state[nxt] = 1
                path.append((nxt, iter(edges.get(nxt, ()))))
    return False


class _Compiled:
    __slots__ = ("recursive", "schema", "validator")

    def __init__(self, schema: Any) -> None:
        self.schema = schema
        self.validator = _build(schema)
        self.recursive = _may_recurse(schema)

    def is_valid(self, data: Any) -> bool:
        """The yes/no verdict (the hot path: ~0.06 ms for a 10 KB handoff)."""
        return self.first_error(data) is None

    def first_error(self, data: Any) -> ValidationError | None:
        if self.recursive and (problem := json_problem(data, "$")) is not None:
            return _error(problem.reason, [], "type", data)
        try:
            if self.validator.is_valid(data):
                return None
            best = None
            for i, err in enumerate(self.validator.iter_errors(data)):
                if best is None or _relevance(err) < _relevance(best):
                    best = err
                if i + 1 >= _MAX_ERRORS_SCANNED:
                    break
        except ValueError as err:  # not JSON data (a set, an int key) or too deep to convert
            problem = json_problem(data, "$")
            return _error(problem.reason if problem else f"not JSON data: {err}", [], "type",
                          data)
        if best is None:  # cannot happen: the same validator just said invalid
            return _error("invalid", [], "type", data)
        return _error(best.message, best.instance_path, best.kind.name, best.instance,
                      best.schema_path)


def _relevance(err: Any) -> tuple[int, bool]:
    # As jsonschema's best_match: the shallowest error, and a precise one over anyOf/oneOf.
    return len(err.instance_path), err.kind.name in _WEAK


_MAX_MESSAGE_CHARS = 1000  # a message quotes the bad value; a 1 MB string stays out of it


def _error(message: str, path: list[Any], keyword: str, instance: Any,
           schema_path: list[Any] | None = None) -> ValidationError:
    if len(message) > _MAX_MESSAGE_CHARS:
        half = _MAX_MESSAGE_CHARS // 2  # the end says why ("does not match ..."): keep it
        message = f"{message[:half]}…{message[-half:]}"
    return ValidationError(message, validator=keyword, path=deque(path), instance=instance,
                           schema_path=deque(schema_path or ()))


_cache: dict[int, tuple[Any, _Compiled]] = {}
_by_text: dict[str, _Compiled] = {}


def compiled(schema: Any) -> _Compiled:
    """The compiled validator for ``schema``: looked up by identity first, then by content
    (each execution parses its definition anew, so equal schemas arrive as new dicts).
    Raises ``SchemaCompileError`` for a schema jsonschema-rs refuses."""
    hit = _cache.get(id(schema))
    # The entry holds the schema object itself, so its id cannot be reused by another dict.
    if hit is not None and hit[0] is schema:
        return hit[1]
    if (problem := json_problem(schema, max_depth=MAX_JSON_DEPTH)) is not None:
        raise SchemaCompileError(problem.path, problem.reason)
    text = json.dumps(schema, sort_keys=True, default=str)
    entry = _by_text.get(text)
    if entry is None:
        if len(_by_text) > 1024:
            _by_text.clear()
        entry = _by_text[text] = _Compiled(schema)
    if len(_cache) > 4096:
        _cache.clear()
    _cache[id(schema)] = (schema, entry)
    return entry


def schema_error(schema: Any) -> SchemaCompileError | None:
    """Why jsonschema-rs refuses ``schema`` (meta-schema violation, a pattern the linear
    regex engine cannot compile, an outside ``$ref``), or None."""
    try:
        compiled(schema)
    except SchemaCompileError as err:
        return err
    return None


def first_error(schema: Any, data: Any) -> ValidationError | None:
    """The most relevant violation of ``schema`` by ``data``, or None when valid. The error
    is a ``jsonschema.ValidationError`` (``.message``, ``.json_path``) built from
    jsonschema-rs's answer."""
    return compiled(schema).first_error(data)
