"""The accelerated validity check agrees with the jsonschema library on 2020-12 schemas."""

from __future__ import annotations

from typing import Any

import pytest
from jsonschema import Draft202012Validator

from omium import schemas
from omium.schemas import first_error

CASES: list[tuple[dict[str, Any], list[Any]]] = [
    ({"type": "object", "required": ["a"], "properties": {"a": {"type": "integer"}}},
     [{"a": 1}, {"a": 1.5}, {"a": "1"}, {}, [], {"a": True}]),
    ({"type": "number", "minimum": 0, "maximum": 1}, [0, 1, 1.5, -0.1, "0.5", None]),
    ({"$defs": {"tx": {"type": "object", "properties": {"amount": {"type": "number"}},
                       "required": ["amount"]}},
      "type": "array", "items": {"$ref": "#/$defs/tx"}},
     [[], [{"amount": 1}], [{"amount": "x"}], [{}], [{"amount": 2}, {"amount": None}]]),
    ({"type": "array", "prefixItems": [{"type": "string"}, {"type": "integer"}],
      "items": False}, [["a", 1], ["a"], ["a", 1, 2], [1, "a"]]),
    ({"type": "object", "properties": {"a": {}}, "unevaluatedProperties": False},
     [{"a": 1}, {"a": 1, "b": 2}, {}]),
    ({"type": "object", "patternProperties": {"^x_": {"type": "string"}},
      "additionalProperties": False}, [{"x_a": "s"}, {"x_a": 1}, {"y": "s"}]),
    ({"enum": ["approve", "reject"]}, ["approve", "maybe", None]),
    ({"type": "string", "format": "email"}, ["a@b.c", "not an email"]),  # format: annotation
]


@pytest.mark.parametrize(("schema", "instances"), CASES)
def test_verdicts_match_jsonschema(schema: dict[str, Any], instances: list[Any]) -> None:
    reference = Draft202012Validator(schema)
    for instance in instances:
        assert (first_error(schema, instance) is None) == reference.is_valid(instance), instance


def test_errors_come_from_jsonschema_with_their_path() -> None:
    schema = CASES[2][0]
    err = first_error(schema, [{"amount": 1}, {"amount": "x"}])
    assert err is not None and err.json_path == "$[1].amount"


def test_works_without_the_accelerator(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(schemas, "jsonschema_rs", None)
    monkeypatch.setattr(schemas, "_cache", {})
    monkeypatch.setattr(schemas, "_by_text", {})
    schema = {"type": "object", "properties": {"n": {"maximum": 3}}}
    assert first_error(schema, {"n": 2}) is None
    assert first_error(schema, {"n": 4}) is not None
