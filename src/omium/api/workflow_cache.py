"""Validated workflows, cached per process.

A workflow id is a hash of its content (per tenant), so what it names never changes: its
prepared plan is cached for good (LRU-bounded), and a submission by workflow id costs no
workflow read. Inline definitions are cached by the hash of their JSON text.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from omium.agents._imports import allowed_modules
from omium.agents.refs import reference_problems
from omium.engine._llm import check_llm_backends
from omium.engine.graph import WorkflowGraph, prepare
from omium.errors import FieldProblem, OmiumError, WorkflowValidationError
from omium.store.base import ExecutionStore


@dataclass(frozen=True)
class PreparedWorkflow:
    workflow_id: str
    name: str
    plan: WorkflowGraph
    definition: dict[str, Any]  # what is stored with each execution
    default_inputs: Any

    @property
    def deps(self) -> dict[str, list[str]]:
        """Agent node -> the nodes it waits for (vote nodes left out as nodes)."""
        return {n.id: list(n.deps) for n in self.plan.nodes.values() if not n.is_vote}


def _callable_problems(definition: dict[str, Any]) -> list[FieldProblem]:
    """Every code reference each agent kind declares (``Agent.reference_fields``), under a
    client's rules: a top-level name defined in an allowed module, checked before import
    (the text) and after (what the object is, where it was defined)."""
    return reference_problems(definition, allowed_modules())


def validate_definition(definition: dict[str, Any], *, from_client: bool = True
                        ) -> tuple[WorkflowGraph, dict[str, Any]]:
    """``prepare`` it. A client may not set ``base_dir``: its callables resolve from the
    server's installed packages, never from a folder the client names; and only from the
    allowed packages, checked before anything is imported. Its llm agents need a backend in
    this process's LLM config (``check_llm_backends``), as ``omium validate`` and ``run``
    require."""
    if from_client and isinstance(definition, dict) and "base_dir" in definition:
        raise WorkflowValidationError([FieldProblem(
            "base_dir", "not accepted over the API: callables resolve from the server's "
            "installed packages")])
    if from_client and (problems := _callable_problems(definition)):
        raise WorkflowValidationError(problems)
    plan = prepare(definition)
    if from_client:  # accepted only if it can run here; a stored execution is shown regardless
        check_llm_backends(plan)
    return plan, plan.workflow.model_dump(mode="json", exclude_none=True)


def _prepared(workflow_id: str, plan: WorkflowGraph,
              definition: dict[str, Any]) -> PreparedWorkflow:
    inputs = plan.workflow.inputs
    return PreparedWorkflow(workflow_id, plan.workflow.name, plan, definition,
                            inputs if inputs is not None else {})


class WorkflowCache:
    def __init__(self, max_entries: int = 1024) -> None:
        self.max_entries = max_entries
        self._by_id: OrderedDict[tuple[str, str], PreparedWorkflow] = OrderedDict()
        self._inline: OrderedDict[tuple[str, str], str] = OrderedDict()

    def _remember(self, tenant_id: str, wf: PreparedWorkflow) -> None:
        self._by_id[(tenant_id, wf.workflow_id)] = wf
        self._by_id.move_to_end((tenant_id, wf.workflow_id))
        while len(self._by_id) > self.max_entries:
            self._by_id.popitem(last=False)

    async def register(self, store: ExecutionStore, tenant_id: str,
                       definition: dict[str, Any]) -> PreparedWorkflow:
        """Validate and store a definition (idempotent by content); raises
        ``WorkflowValidationError`` naming each problem."""
        text = json.dumps(definition, sort_keys=True, separators=(",", ":"), default=str)
        digest = hashlib.sha256(text.encode()).hexdigest()
        known = self._inline.get((tenant_id, digest))
        if known is not None and (wf := self._by_id.get((tenant_id, known))) is not None:
            self._by_id.move_to_end((tenant_id, known))
            return wf
        plan, stored = validate_definition(definition)
        workflow_id = await store.put_workflow(plan.workflow.name, stored, tenant_id)
        wf = _prepared(workflow_id, plan, stored)
        self._remember(tenant_id, wf)
        self._inline[(tenant_id, digest)] = workflow_id
        while len(self._inline) > self.max_entries:
            self._inline.popitem(last=False)
        return wf

    async def load(self, store: ExecutionStore, tenant_id: str,
                   workflow_id: str) -> PreparedWorkflow | None:
        """The tenant's workflow, prepared; None if it has no such workflow."""
        wf = self._by_id.get((tenant_id, workflow_id))
        if wf is not None:
            self._by_id.move_to_end((tenant_id, workflow_id))
            return wf
        rec = await store.get_workflow_record(workflow_id, tenant_id)
        if rec is None:
            return None
        # Checked as the client sent it: a definition stored before a rule was tightened
        # (or written by other means) never runs unchecked when named by id.
        plan, stored = validate_definition(rec.definition)
        wf = _prepared(workflow_id, plan, stored)
        self._remember(tenant_id, wf)
        return wf

    def for_execution(self, tenant_id: str, workflow_id: str | None,
                      definition: dict[str, Any]) -> PreparedWorkflow | None:
        """The prepared workflow of an execution (whose stored definition is its workflow's);
        None if it no longer prepares here (e.g. a callable is gone)."""
        wf = None if workflow_id is None else self._by_id.get((tenant_id, workflow_id))
        if wf is not None:
            return wf
        try:
            plan, stored = validate_definition(definition, from_client=False)
        except OmiumError:
            return None
        if workflow_id is None:
            return _prepared("", plan, stored)
        wf = _prepared(workflow_id, plan, stored)
        self._remember(tenant_id, wf)
        return wf
