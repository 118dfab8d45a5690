"""Structural checks a schema cannot express: ids, references, cycles, JSON Schemas."""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from omium.errors import FieldProblem
from omium.jsonsafe import MAX_PATTERN_CHARS, MAX_SCHEMA_BYTES, MAX_SCHEMA_DEPTH, json_problem
from omium.schemas import schema_error
from omium.workflow.model import AgentSpec, WorkflowDef


def _where(i: int, spec: AgentSpec, field: str) -> str:
    return f"agents[{i}] ({spec.id}).{field}"


def _long_pattern(schema: Any) -> tuple[str, int] | None:
    """Where a ``pattern`` or ``patternProperties`` regex is longer than the cap (and its
    length), found without recursion."""
    stack: list[tuple[Any, str]] = [(schema, "")]
    while stack:
        node, at = stack.pop()
        if isinstance(node, list):
            stack.extend((v, f"{at}/{i}") for i, v in enumerate(node))
            continue
        if not isinstance(node, dict):
            continue
        pattern = node.get("pattern")
        if isinstance(pattern, str) and len(pattern) > MAX_PATTERN_CHARS:
            return f"{at}/pattern", len(pattern)
        props = node.get("patternProperties")
        for regex in props if isinstance(props, dict) else ():
            if len(regex) > MAX_PATTERN_CHARS:
                return f"{at}/patternProperties", len(regex)
        # Everything is walked, data keywords (const, default) too: under "properties" a
        # subschema may be named "default", and skipping it would hide its pattern.
        stack.extend((v, f"{at}/{k}") for k, v in node.items())
    return None


@lru_cache(maxsize=1024)
def _schema_error(canonical: str) -> tuple[str, str] | None:
    """(where, why) the schema is refused, or None. Caps first, so nothing costly (the
    compiler) sees an oversized schema; then jsonschema-rs, the engine that will run it.
    Cached by the schema's canonical text: every execution re-validates its definition."""
    if len(canonical.encode()) > MAX_SCHEMA_BYTES:
        return "", f"larger than {MAX_SCHEMA_BYTES} bytes as JSON"
    schema = json.loads(canonical)
    if (long := _long_pattern(schema)) is not None:
        return long[0].lstrip("/"), (f"a regular expression of {long[1]} characters (at most "
                                     f"{MAX_PATTERN_CHARS})")
    if (err := schema_error(schema)) is not None:
        return err.path, err.reason
    return None


def _schema_problems(i: int, spec: AgentSpec) -> list[FieldProblem]:
    out = []
    for field in ("input_schema", "output_schema"):
        schema = getattr(spec, field)
        if schema is None:
            continue
        if (bad := json_problem(schema, max_depth=MAX_SCHEMA_DEPTH)) is not None:
            # Depth and NaN come before serialising: json.dumps recurses, and writes NaN.
            where = f" (at {bad.path})" if bad.path else ""
            out.append(FieldProblem(_where(i, spec, field),
                                    f"not a valid JSON Schema: {bad.reason}{where}"))
            continue
        found = _schema_error(json.dumps(schema, sort_keys=True, default=str))
        if found is not None:
            at, message = found
            out.append(FieldProblem(_where(i, spec, field) + (f"/{at}" if at else ""),
                                    f"not a valid JSON Schema: {message}"))
    return out


def find_cycle(graph: dict[str, list[str]]) -> list[str] | None:
    """Return one dependency cycle as a list of ids (first id repeated last), or None."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in graph.get(node, []):
            if state.get(dep) == 1:
                return [*stack[stack.index(dep):], dep]
            if dep in graph and state.get(dep) is None and (cycle := visit(dep)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in graph:
        if state.get(node) is None and (cycle := visit(node)):
            return cycle
    return None


def structural_problems(defn: WorkflowDef) -> list[FieldProblem]:
    problems: list[FieldProblem] = []
    ids = [a.id for a in defn.agents]
    seen: set[str] = set()
    for i, spec in enumerate(defn.agents):
        if spec.id in seen:
            problems.append(FieldProblem(f"agents[{i}].id", f"duplicate agent id {spec.id!r}"))
        seen.add(spec.id)
        problems += _schema_problems(i, spec)
        if spec.depends_on and defn.execution_order != "dag":
            problems.append(FieldProblem(_where(i, spec, "depends_on"),
                                         "only allowed with execution_order: dag"))
        for dep in spec.depends_on:
            if dep not in ids:
                problems.append(FieldProblem(_where(i, spec, "depends_on"),
                                             f"unknown agent {dep!r}"))
            elif dep == spec.id:
                problems.append(FieldProblem(_where(i, spec, "depends_on"),
                                             "an agent cannot depend on itself"))
        if spec.strategy == "fallback" and not spec.fallback:
            problems.append(FieldProblem(_where(i, spec, "fallback"),
                                         "on_failure: fallback needs a fallback agent id"))
        if spec.fallback is not None:
            if spec.fallback not in ids:
                problems.append(FieldProblem(_where(i, spec, "fallback"),
                                             f"unknown agent {spec.fallback!r}"))
            elif spec.fallback == spec.id:
                problems.append(FieldProblem(_where(i, spec, "fallback"),
                                             "an agent cannot be its own fallback"))
        if spec.framework == "consensus":
            if defn.execution_order != "dag":
                problems.append(FieldProblem(_where(i, spec, "framework"),
                                             "consensus nodes are only allowed in a dag; "
                                             "use the workflow-level 'consensus' for parallel"))
            if len(spec.depends_on) < 2 and defn.execution_order == "dag":
                problems.append(FieldProblem(_where(i, spec, "depends_on"),
                                             "a consensus node needs at least two voters"))
        elif spec.consensus is not None:
            problems.append(FieldProblem(_where(i, spec, "consensus"),
                                         "only consensus nodes (framework: consensus) take it"))
    if defn.consensus is not None and defn.execution_order != "parallel":
        problems.append(FieldProblem("consensus", "workflow-level consensus needs "
                                     "execution_order: parallel (in a dag, add a consensus node)"))
    fallbacks = defn.fallback_ids
    for i, spec in enumerate(defn.agents):
        if spec.id in fallbacks and spec.depends_on:
            problems.append(FieldProblem(_where(i, spec, "depends_on"),
                                         "a fallback agent runs in place of another agent and "
                                         "cannot have dependencies of its own"))
        if spec.id in fallbacks and any(spec.id in a.depends_on for a in defn.agents):
            problems.append(FieldProblem(_where(i, spec, "id"),
                                         "a fallback agent cannot be depended on"))
    if set(ids) and set(ids) <= fallbacks:
        problems.append(FieldProblem("agents", "every agent is a fallback: nothing would run"))
    if defn.execution_order == "dag" and not problems:
        graph = {a.id: list(a.depends_on) for a in defn.agents}
        if cycle := find_cycle(graph):
            problems.append(FieldProblem("agents", "dependency cycle: " + " -> ".join(cycle)))
    return problems
