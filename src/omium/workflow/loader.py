"""Reading workflow files and dicts into a validated ``WorkflowDef``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from omium.errors import FieldProblem, WorkflowValidationError
from omium.jsonsafe import MAX_JSON_DEPTH, NotJSONError, json_problem, loads_strict
from omium.workflow.model import WorkflowDef
from omium.workflow.validate import structural_problems


def _loc_to_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _pydantic_problems(err: ValidationError, data: Any) -> list[FieldProblem]:
    problems = []
    for e in err.errors():
        loc = tuple(e["loc"])
        path = _loc_to_path(loc)
        # Name the agent by id, not only by position: "agents[1] (fraud_agent).timeout_s".
        if len(loc) >= 2 and loc[0] == "agents" and isinstance(loc[1], int):
            try:
                agent_id = data["agents"][loc[1]]["id"]
                path = path.replace(f"agents[{loc[1]}]", f"agents[{loc[1]}] ({agent_id})", 1)
            except (KeyError, IndexError, TypeError):
                pass
        problems.append(FieldProblem(path, e["msg"]))
    return problems


def parse_workflow(obj: WorkflowDef | dict[str, Any], *, source: str | None = None,
                   base_dir: str | Path | None = None) -> WorkflowDef:
    """Validate a definition's structure; raise ``WorkflowValidationError`` naming each field."""
    if isinstance(obj, WorkflowDef):
        defn = obj
    else:
        if not isinstance(obj, dict):
            raise WorkflowValidationError(
                [FieldProblem("", f"a workflow must be a mapping, got {type(obj).__name__}")],
                source)
        # Before pydantic, which recurses: no NaN (YAML's .nan too), nothing too deep.
        if (problem := json_problem(obj)) is not None:
            raise WorkflowValidationError([problem], source)
        try:
            defn = WorkflowDef.model_validate(obj)
        except ValidationError as err:
            raise WorkflowValidationError(_pydantic_problems(err, obj), source) from None
    if base_dir is not None and defn.base_dir is None:
        defn = defn.model_copy(update={"base_dir": str(Path(base_dir).resolve())})
    problems = structural_problems(defn)
    if problems:
        raise WorkflowValidationError(problems, source)
    return defn


def read_document(path: str | Path) -> Any:
    """Read a YAML or JSON file; a syntax error becomes a problem naming the line."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as err:
        raise WorkflowValidationError([FieldProblem("", f"cannot read file: {err.strerror}")],
                                      str(p)) from None
    except UnicodeDecodeError as err:
        raise WorkflowValidationError([FieldProblem(
            "", f"not UTF-8 text (byte {err.object[err.start]:#04x} at offset {err.start})")],
            str(p)) from None
    try:
        if p.suffix.lower() == ".json":
            return loads_strict(text)
        return yaml.safe_load(text)
    except (yaml.YAMLError, json.JSONDecodeError, NotJSONError) as err:
        raise WorkflowValidationError([FieldProblem("", f"not valid YAML/JSON: {err}")],
                                      str(p)) from None
    except RecursionError:  # PyYAML composes nested nodes recursively
        raise WorkflowValidationError([FieldProblem(
            "", f"not valid YAML/JSON: nested deeper than {MAX_JSON_DEPTH} levels")],
            str(p)) from None


def load_workflow(path: str | Path) -> WorkflowDef:
    """Load a workflow file; relative callables resolve against the file's folder."""
    p = Path(path)
    return parse_workflow(read_document(p), source=str(p), base_dir=p.parent)
