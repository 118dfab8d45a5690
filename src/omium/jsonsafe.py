"""What JSON may enter Omium: the caps, strict parsing, and one check for parsed values.

Every door (API bodies, ``--input``, workflow files, agent outputs, execution inputs) takes
only what a JSON document can hold and what later code can walk safely:

* no ``NaN`` / ``Infinity`` / ``-Infinity``: they are not JSON (RFC 8259), ``json.dumps``
  would store them as text no other reader parses, and ``NaN`` passes every
  ``minimum``/``maximum``;
* at most ``MAX_JSON_DEPTH`` levels of nesting: deeper values make recursive code (the
  encoder, pydantic, a schema validator following a recursive ``$ref``) fail or crash;
* agent outputs, made by code rather than parsed, also only JSON's own types
  (``json_problem(..., only_json=True)``): a set, a date or an object is refused, not
  stored as the text of its ``str()``.

Checks here are iterative, so a deep value cannot raise ``RecursionError`` while being
judged. A leaf module: it imports nothing from Omium but ``errors``.
"""

from __future__ import annotations

import json
import math
from typing import Any

from omium.errors import FieldProblem

#: Nesting levels a value may have (``{"a": 1}`` is 1 level): inputs, definitions, outputs.
MAX_JSON_DEPTH = 64
#: A JSON Schema in a definition (input_schema / output_schema): serialised size in bytes,
MAX_SCHEMA_BYTES = 64 * 1024
#: its nesting depth (a schema is a JSON value, so levels are counted the same way),
MAX_SCHEMA_DEPTH = 32
#: and the length of each regular expression it holds (``pattern``, ``patternProperties``).
MAX_PATTERN_CHARS = 1000

_CONTAINERS = (dict, list, tuple)
# What json.dumps writes as JSON by itself (bool is an int): anything else would reach the
# store's ``default=str`` and be stored as a string. Subclasses count (IntEnum, OrderedDict).
_SCALARS = (str, int, float, type(None))
_KEYS = (str, int, float, bool, type(None))  # object keys json.dumps turns into strings
# What to return instead, for the non-JSON values agents most often return.
_INSTEAD = {"set": "a list", "frozenset": "a list", "bytes": "a string",
            "bytearray": "a string", "datetime": "its .isoformat() string",
            "date": "its .isoformat() string", "time": "its .isoformat() string",
            "Decimal": "a number or a string", "UUID": "a string", "ndarray": ".tolist()"}
Trail = tuple[Any, ...] | None  # (parent trail, key): a path, spelled out only when needed


class NotJSONError(ValueError):
    """Text or a value that is not strict JSON; ``str()`` says why (and where, when known)."""


def _refuse_constant(name: str) -> Any:
    raise NotJSONError(f"{name} is not valid JSON (only finite numbers are)")


def loads_strict(text: str | bytes) -> Any:
    """``json.loads`` that refuses NaN/Infinity/-Infinity and values nested deeper than
    ``MAX_JSON_DEPTH``. Raises ``NotJSONError`` for those and ``json.JSONDecodeError`` (also
    a ``ValueError``) for malformed text."""
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:  # the C decoder nests on the C stack; it gives up near 1000
        raise NotJSONError(f"nested deeper than {MAX_JSON_DEPTH} levels") from None
    if (problem := json_problem(value)) is not None:
        raise NotJSONError(str(problem))
    return value


def json_problem(value: Any, root: str = "", *, max_depth: int = MAX_JSON_DEPTH,
                 name_levels: int = 3, only_json: bool = False) -> FieldProblem | None:
    """The first reason ``value`` cannot be taken as JSON, or None: a non-finite float (its
    path named) or nesting deeper than ``max_depth`` (named by the first ``name_levels``
    keys under ``root``, e.g. ``agents[0].input_schema``: the full path would be 64 long).

    ``only_json``: also a value of a type JSON does not have (a set, a date, bytes, an
    object; tuples are arrays), or an object key that is not a string, number, bool or null
    (named by its path: ``$.ids``). Without it those are left to the encoder, as before (the
    doors that parse text, where YAML may give a date). Linear in the size of ``value``,
    without recursion; paths are only worked out once a problem is found (agent outputs go
    through here on every step)."""
    if _is_clean(value, max_depth, only_json):
        return None
    return _locate(value, root, max_depth, name_levels, only_json)


def _is_clean(value: Any, max_depth: int, only_json: bool = False) -> bool:
    if not isinstance(value, _CONTAINERS):
        if only_json and not isinstance(value, _SCALARS):
            return False
        return not isinstance(value, float) or math.isfinite(value)
    isfinite = math.isfinite
    stack: list[tuple[Any, int]] = [(value, 1)]
    pop, push = stack.pop, stack.append
    while stack:
        node, depth = pop()
        if depth > max_depth:
            return False
        if isinstance(node, dict):
            if only_json:
                for key in node:
                    if type(key) is not str and not isinstance(key, _KEYS):
                        return False
            items = node.values()
        else:
            items = node
        for item in items:
            kind = type(item)  # exact types first: the common cases cost a comparison or two
            if kind is dict or kind is list:
                push((item, depth + 1))
            elif kind is float:
                if not isfinite(item):
                    return False
            elif kind is str or kind is int or kind is bool or item is None:
                continue
            elif isinstance(item, _CONTAINERS):
                push((item, depth + 1))
            elif isinstance(item, float):  # e.g. numpy.float64
                if not isfinite(item):
                    return False
            elif only_json and not isinstance(item, _SCALARS):
                return False
    return True


def _locate(value: Any, root: str, max_depth: int, name_levels: int,
            only_json: bool = False) -> FieldProblem | None:
    """The slow walk of ``json_problem``, keeping a trail of keys to name the place."""
    if not isinstance(value, _CONTAINERS):
        if only_json and not isinstance(value, _SCALARS):
            return FieldProblem(root, _not_json(value))
        return FieldProblem(root, _non_finite(value))
    stack: list[tuple[Any, int, Trail]] = [(value, 1, None)]
    while stack:
        node, depth, trail = stack.pop()
        if depth > max_depth:
            return FieldProblem(_path(root, trail, name_levels),
                                f"nested deeper than {max_depth} levels")
        if only_json and isinstance(node, dict):
            for key in node:
                if not isinstance(key, _KEYS):
                    return FieldProblem(_path(root, trail), f"key {key!r} is a "
                                        f"{type(key).__name__}; JSON object keys are strings")
        for key, item in (node.items() if isinstance(node, dict) else enumerate(node)):
            if isinstance(item, float) and not math.isfinite(item):
                return FieldProblem(_path(root, (trail, key)), _non_finite(item))
            if isinstance(item, _CONTAINERS):
                stack.append((item, depth + 1, (trail, key)))
            elif only_json and not isinstance(item, _SCALARS):
                return FieldProblem(_path(root, (trail, key)), _not_json(item))
    return None


def _path(root: str, trail: Trail, keep: int | None = None) -> str:
    keys: list[Any] = []
    while trail is not None:
        trail, key = trail
        keys.append(key)
    path = root
    for key in reversed(keys[-keep:] if keep is not None and len(keys) > keep else keys):
        path = f"{path}[{key}]" if isinstance(key, int) else (f"{path}.{key}" if path
                                                                else str(key))
    return path


def _not_json(value: Any) -> str:
    name = type(value).__name__
    article = "an" if name[:1].lower() in "aeiou" else "a"
    instead = _INSTEAD.get(name)
    return f"{article} {name} is not JSON" + (f" (use {instead})" if instead else "")


def _non_finite(number: float) -> str:
    shown = "NaN" if math.isnan(number) else ("Infinity" if number > 0 else "-Infinity")
    return f"{shown} is not a JSON number (only finite numbers are)"
