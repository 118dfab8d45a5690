"""Compiled JSON Schema validators, cached per schema object (compiling is the slow part)."""

from __future__ import annotations

from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match

_cache: dict[int, tuple[dict[str, Any], Draft202012Validator]] = {}


def validator_for(schema: dict[str, Any]) -> Draft202012Validator:
    hit = _cache.get(id(schema))
    # Keep the schema object itself in the entry so its id cannot be reused by another dict.
    if hit is not None and hit[0] is schema:
        return hit[1]
    validator = Draft202012Validator(schema)
    if len(_cache) > 4096:
        _cache.clear()
    _cache[id(schema)] = (schema, validator)
    return validator


def first_error(schema: dict[str, Any], data: Any) -> ValidationError | None:
    """The most relevant violation of ``schema`` by ``data``, or None when valid."""
    validator = validator_for(schema)
    if validator.is_valid(data):
        return None
    return best_match(validator.iter_errors(data))
