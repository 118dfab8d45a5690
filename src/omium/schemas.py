"""Compiled JSON Schema validators, cached per schema object (compiling is the slow part).

The yes/no check runs on jsonschema-rs (Rust, Draft 2020-12) when it is installed: a 10 KB
handoff validates in ~0.1 ms instead of ~4 ms. Errors are always produced by the
``jsonschema`` library, which stays the authority: a verdict of "invalid" that it cannot
explain is treated as valid, so the accelerator can never reject what jsonschema accepts.
"""

from __future__ import annotations

import json
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match

try:
    import jsonschema_rs
except ImportError:  # optional accelerator
    jsonschema_rs = None


class _Compiled:
    __slots__ = ("fast", "schema", "slow")

    def __init__(self, schema: dict[str, Any]) -> None:
        self.schema = schema
        self.slow = Draft202012Validator(schema)
        self.fast = None
        if jsonschema_rs is not None:
            try:
                self.fast = jsonschema_rs.Draft202012Validator(schema)
            except Exception:  # a construct it does not support: use the pure-Python one
                self.fast = None

    def is_valid(self, data: Any) -> bool:
        if self.fast is not None:
            try:
                return bool(self.fast.is_valid(data))
            except Exception:  # data it cannot convert (e.g. tuples): ask jsonschema
                pass
        return bool(self.slow.is_valid(data))


_cache: dict[int, tuple[dict[str, Any], _Compiled]] = {}
_by_text: dict[str, _Compiled] = {}


def compiled(schema: dict[str, Any]) -> _Compiled:
    """The compiled validator for ``schema``: looked up by identity first, then by content
    (each execution parses its definition anew, so equal schemas arrive as new dicts)."""
    hit = _cache.get(id(schema))
    # The entry holds the schema object itself, so its id cannot be reused by another dict.
    if hit is not None and hit[0] is schema:
        return hit[1]
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


def first_error(schema: dict[str, Any], data: Any) -> ValidationError | None:
    """The most relevant violation of ``schema`` by ``data``, or None when valid."""
    entry = compiled(schema)
    if entry.is_valid(data):
        return None
    return best_match(entry.slow.iter_errors(data))
