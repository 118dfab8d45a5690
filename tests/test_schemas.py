"""jsonschema-rs, the one engine for user data, judges ordinary 2020-12 schemas as the
jsonschema library does; its errors keep the shape callers know (message, json_path)."""

from __future__ import annotations

from typing import Any

import pytest
from jsonschema import Draft202012Validator, ValidationError

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


def test_errors_are_jsonschema_errors_with_their_path() -> None:
    schema = CASES[2][0]
    err = first_error(schema, [{"amount": 1}, {"amount": "x"}])
    assert isinstance(err, ValidationError)
    assert err.json_path == "$[1].amount"
    assert err.message == '"x" is not of type "number"'


def test_the_shallowest_error_is_reported() -> None:
    schema = {"type": "object", "required": ["name"],
              "properties": {"tx": {"type": "object", "properties": {"n": {"type": "integer"}}}}}
    err = first_error(schema, {"tx": {"n": "deep"}})
    assert err is not None and err.json_path == "$" and "name" in err.message


def test_data_that_is_not_json_is_an_error_not_a_crash() -> None:
    err = first_error({"type": "array"}, {1, 2})
    assert err is not None and "not JSON data" in err.message
