"""An agent's output is stored as JSON or refused: a set, a date or an object is the agent's
``validation_error`` naming where it is, never the text of its ``str()``; what JSON has
(tuples as arrays, subclasses of its types, number keys) keeps working."""

from __future__ import annotations

import datetime
import decimal
import enum
import json
from collections import OrderedDict
from pathlib import Path
from typing import Any

import pytest

from omium import MultiAgentExecutor
from omium.jsonsafe import json_problem
from omium.store.base import Store
from tests._cli_process import omium_cli

HERE = "tests.test_agent_outputs"


class Level(enum.IntEnum):
    HIGH = 3


class Colour(enum.Enum):
    RED = "red"


# -- agents (module-level: workflows name them as tests.test_agent_outputs:<name>)


def returns_set(inputs: Any) -> Any:
    return {"ids": {1, 2}}


def returns_date(inputs: Any) -> Any:
    return {"when": [{"at": datetime.date(2025, 1, 2)}]}


def returns_tuple_key(inputs: Any) -> Any:
    return {"grid": {(0, 1): "x"}}


def returns_enum(inputs: Any) -> Any:
    return {"colour": Colour.RED}


def returns_bare_set(inputs: Any) -> Any:
    return frozenset({"a"})


def returns_json_kinds(inputs: Any) -> Any:
    return {"pair": (1, 2), "nested": [("a", (True, None))], "ordered": OrderedDict(b=1),
            "level": Level.HIGH, "counts": {1: "one"}, "score": 0.5, "flag": False}


def workflow(fn: str, attempts: int = 2) -> dict[str, Any]:
    return {"name": "outputs", "agents": [
        {"id": "collector", "framework": "python", "definition": {"callable": f"{HERE}:{fn}"},
         "retry": {"max_attempts": attempts, "backoff_s": 0}}]}


@pytest.mark.parametrize(("fn", "says"), [
    ("returns_set", "$.ids: a set is not JSON (use a list)"),
    ("returns_date", "$.when[0].at: a date is not JSON (use its .isoformat() string)"),
    ("returns_tuple_key", "$.grid: key (0, 1) is a tuple; JSON object keys are strings"),
    ("returns_enum", "$.colour: a Colour is not JSON"),
    ("returns_bare_set", "$: a frozenset is not JSON (use a list)"),
])
async def test_a_non_json_output_fails_the_agent_as_a_validation_error(
        sqlite_store: Store, fn: str, says: str) -> None:
    async with MultiAgentExecutor(sqlite_store) as ex:
        result = await ex.execute(f"out-{fn}", workflow(fn))
    assert (result.status, result.failed_agent, result.failure_type) == (
        "failed", "collector", "validation_error")
    assert result.error == f"OutputValidationError: output is not valid JSON at {says}"
    # Retried like any output validation error, and nothing of it was checkpointed.
    events = await sqlite_store.get_events(f"out-{fn}")
    failed = [e.data for e in events if e.type == "failure_detected"]
    assert [(d["attempt"], d["failure_type"]) for d in failed] == [
        (1, "validation_error"), (2, "validation_error")]
    assert await sqlite_store.get_checkpoints(f"out-{fn}") == []


async def test_tuples_and_json_subtypes_are_stored_as_json(sqlite_store: Store) -> None:
    async with MultiAgentExecutor(sqlite_store) as ex:
        result = await ex.execute("out-ok", workflow("returns_json_kinds"))
    assert result.status == "completed", result.error
    [cp] = await sqlite_store.get_checkpoints("out-ok")
    assert cp.output == {"pair": [1, 2], "nested": [["a", [True, None]]], "ordered": {"b": 1},
                         "level": 3, "counts": {"1": "one"}, "score": 0.5, "flag": False}


def test_the_cli_reports_the_agent_and_the_path(tmp_path: Path) -> None:
    wf = tmp_path / "wf.json"
    wf.write_text(json.dumps(workflow("returns_set", attempts=1)))
    done = omium_cli("run", wf, "--db", f"sqlite:///{tmp_path}/x.db", cwd=tmp_path)
    assert done.code == 1, done.text
    text = " ".join(done.out.split())
    assert ("failed agent: collector (validation_error): OutputValidationError: output is not "
            "valid JSON at $.ids: a set is not JSON (use a list)") in text
    assert "{1, 2}" not in done.text


def test_json_problem_only_json() -> None:
    def problem(value: Any) -> str | None:
        found = json_problem(value, "$", only_json=True)
        return None if found is None else str(found)

    for ok in ({"a": (1, [2.5, "x"])}, "text", 3, None, True, [], {1: 1, None: 2, 1.5: 3},
               [Level.HIGH], OrderedDict(a=OrderedDict(b=[1]))):
        assert problem(ok) is None, ok
    assert problem({"ids": {1, 2}}) == "$.ids: a set is not JSON (use a list)"
    assert problem([1, [b"x"]]) == "$[1][0]: a bytes is not JSON (use a string)"
    assert problem({"d": decimal.Decimal("1.5")}) == (
        "$.d: a Decimal is not JSON (use a number or a string)")
    assert problem(object()) == "$: an object is not JSON"
    assert problem({"x": {"y": float("nan")}}).endswith("NaN is not a JSON number "
                                                        "(only finite numbers are)")
    # The other doors (parsed text, where YAML gives dates) keep the encoder's say.
    assert json_problem({"ids": {1, 2}, "at": datetime.date(2025, 1, 2)}) is None
