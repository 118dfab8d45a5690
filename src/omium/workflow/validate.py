"""Structural checks a schema cannot express: ids, references, cycles, JSON Schemas."""

from __future__ import annotations

import json
from functools import lru_cache

from jsonschema import Draft202012Validator, SchemaError

from omium.errors import FieldProblem
from omium.workflow.model import AgentSpec, WorkflowDef


def _where(i: int, spec: AgentSpec, field: str) -> str:
    return f"agents[{i}] ({spec.id}).{field}"


@lru_cache(maxsize=1024)
def _schema_error(canonical: str) -> tuple[str, str] | None:
    # Checking a schema against the metaschema costs ~0.7 ms; every execution re-validates
    # its definition, so the verdict is cached by the schema's canonical text.
    try:
        Draft202012Validator.check_schema(json.loads(canonical))
    except SchemaError as err:
        return "/".join(str(p) for p in err.absolute_path), err.message
    return None


def _schema_problems(i: int, spec: AgentSpec) -> list[FieldProblem]:
    out = []
    for field in ("input_schema", "output_schema"):
        schema = getattr(spec, field)
        if schema is None:
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
