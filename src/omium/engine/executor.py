"""``MultiAgentExecutor``: start, resume and review durable multi-agent executions."""

from __future__ import annotations

import asyncio
import json
from collections import OrderedDict
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from omium.engine import commands
from omium.engine._llm import build_router, router_for
from omium.engine.attempts import Sleep
from omium.engine.endpoints import AgentEndpoints, start_run
from omium.engine.graph import WorkflowGraph, prepare
from omium.engine.holder import Holder, holder_id, lease_fields
from omium.engine.result import ExecutionResult, usage_summary
from omium.engine.run import OnEvent, Run
from omium.errors import (
    ExecutionNotFoundError,
    ExecutionStateError,
    FieldProblem,
    InputValidationError,
)
from omium.jsonsafe import json_problem
from omium.schemas import first_error
from omium.status import Status
from omium.store import open_store
from omium.store.base import Store
from omium.store.records import (
    ExecutionRecord,
)
from omium.workflow.model import WorkflowDef

if TYPE_CHECKING:
    from omium.llm.router import LLMRouter

# Definitions given as dicts, kept prepared by their content: a script or a service that
# calls ``execute`` in a loop passes the same one each time (a worker caches its plans too).
PLANS_CACHED = 64


def check_inputs(plan: WorkflowGraph, inputs: Any) -> None:
    """Validate inputs against every entry agent's input schema before anything is written."""
    problems = []
    if (bad := json_problem(inputs, "inputs")) is not None:  # NaN, or too deep to store
        raise InputValidationError([bad])
    try:
        json.dumps(inputs)
    except (TypeError, ValueError) as err:
        raise InputValidationError([FieldProblem("inputs", f"not JSON-serialisable: {err}")]
                                   ) from None
    for node in plan.entry_nodes:
        schema = node.spec.input_schema if node.spec else None
        if schema is not None and (err := first_error(schema, inputs)):
            problems.append(FieldProblem(f"inputs{err.json_path[1:]}",
                                         f"{err.message} (input_schema of {node.id})"))
    if problems:
        raise InputValidationError(problems)


class MultiAgentExecutor:
    """Runs workflows durably on a store (``$OMIUM_DATABASE_URL``, default ``./omium.db``).

    ``on_event(kind, agent_id, data)`` is called synchronously for progress displays.
    ``sleep`` is the backoff clock (inject a fake one in tests).

    Agents' ``ctx.llm_base_url``/``llm_api_key`` point at a gateway this executor starts in
    its process (127.0.0.1, a random port) when an agent first reads one, and stops in
    ``aclose``; calls through it use the executor's router and bill its store.
    """

    def __init__(self, store: Store | None = None, *, tenant_id: str = "local",
                 on_event: OnEvent | None = None, sleep: Sleep = asyncio.sleep,
                 router: LLMRouter | None = None) -> None:
        self._store = store
        self._owns_store = store is None
        self._router = router
        self._owns_router = router is None
        self._endpoints: AgentEndpoints | None = None
        self._connected = False
        self.tenant_id = tenant_id
        self.on_event = on_event
        self.sleep = sleep
        self._plans: OrderedDict[str, tuple[WorkflowGraph, dict[str, Any]]] = OrderedDict()

    async def store(self) -> Store:
        if self._store is None:
            self._store = open_store()
        if not self._connected:
            await self._store.connect()
            self._connected = True
        return self._store

    async def aclose(self) -> None:
        if self._endpoints is not None:  # the gateway first: it calls the router
            await self._endpoints.aclose()
            self._endpoints = None
        if self._router is not None and self._owns_router:
            await self._router.aclose()
            self._router = None
        if self._store is not None and self._owns_store and self._connected:
            await self._store.close()
            self._connected = False

    async def __aenter__(self) -> MultiAgentExecutor:
        await self.store()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _llm(self, store: Store, plan: WorkflowGraph) -> LLMRouter | None:
        """The router for llm agents: given, or built from the LLM config on first need,
        billing the executor's store."""
        if self._router is None:
            self._router = router_for(plan, store)
        return self._router

    def _gateway_router(self) -> LLMRouter:
        """The router the in-process gateway calls: the executor's, built if no llm agent
        needed one yet."""
        if self._router is None:
            assert self._store is not None
            self._router = build_router(self._store)
        return self._router

    def _agent_endpoints(self) -> AgentEndpoints:
        # Costs an object: the gateway starts when an agent first reads its endpoint.
        if self._endpoints is None:
            self._endpoints = AgentEndpoints(router=self._gateway_router)
        return self._endpoints

    async def _drive(self, store: Store, plan: WorkflowGraph, rec: ExecutionRecord,
                     epoch: int, *, fresh: bool = False) -> ExecutionResult:
        """Run it here, under the lease at ``epoch`` this process holds (see holder.py)."""
        holder = Holder(store, rec.id, epoch)
        run = Run(store, plan, rec, on_event=self.on_event, sleep=self.sleep,
                  llm=self._llm(store, plan), epoch=epoch, gate=holder.gate)
        result = await holder.hold(start_run(self._agent_endpoints(), run.drive(fresh=fresh)))
        if result is None:
            return result_from_record(await self._record(rec.id))
        # Read once the run is over: a framework agent's calls through the gateway are billed
        # as they happen, outside the run's own llm router.
        return replace(result, usage=await usage_summary(store, rec.id))

    async def execute(self, execution_id: str,
                      workflow_def: WorkflowGraph | WorkflowDef | dict[str, Any],
                      inputs: Any = None, *,
                      source: str | None = None) -> ExecutionResult:
        """Start an execution and drive it to its end (or to a pause for review).

        An id that already exists is never started twice: its current state is returned
        (use ``resume`` to continue an interrupted one). Invalid definitions or inputs raise
        before anything is written.
        """
        plan, definition = self._prepared(workflow_def, source)
        if inputs is None:
            inputs = plan.workflow.inputs if plan.workflow.inputs is not None else {}
        check_inputs(plan, inputs)
        store = await self.store()
        self._llm(store, plan)  # a broken LLM config raises here, before anything is written
        workflow_id = await store.put_workflow(plan.workflow.name, definition, self.tenant_id)
        rec, created = await store.create_execution(ExecutionRecord(
            execution_id, plan.workflow.name, definition, inputs, status=Status.RUNNING,
            tenant_id=self.tenant_id, workflow_id=workflow_id, **lease_fields(holder_id(), 1)))
        if not created:
            if rec.tenant_id != self.tenant_id:  # another tenant's id: it does not exist
                raise ExecutionNotFoundError(execution_id)
            if rec.workflow_id != workflow_id or rec.inputs != inputs:
                what = "workflow" if rec.workflow_id != workflow_id else "inputs"
                raise ExecutionStateError(
                    f"execution id {execution_id!r} is taken by an execution of another "
                    f"{what} ({rec.workflow_name}, {rec.status}): choose another id")
            return replace(result_from_record(rec), existing=True)
        return await self._drive(store, plan, rec, 1, fresh=True)

    def _prepared(self, workflow_def: WorkflowGraph | WorkflowDef | dict[str, Any],
                  source: str | None) -> tuple[WorkflowGraph, dict[str, Any]]:
        """The plan and the definition stored with the execution."""
        key = None
        if isinstance(workflow_def, dict):
            try:
                key = json.dumps([workflow_def, source], sort_keys=True, separators=(",", ":"))
            except (TypeError, ValueError):  # not JSON: prepare says what is wrong with it
                key = None
            if key is not None and (hit := self._plans.get(key)) is not None:
                self._plans.move_to_end(key)
                return hit
        plan = workflow_def if isinstance(workflow_def, WorkflowGraph) else prepare(workflow_def,
                                                                            source=source)
        prepared = plan, plan.workflow.model_dump(mode="json", exclude_none=True)
        if key is not None:
            self._plans[key] = prepared
            if len(self._plans) > PLANS_CACHED:
                self._plans.popitem(last=False)
        return prepared

    async def get(self, execution_id: str) -> ExecutionResult:
        return result_from_record(await self._record(execution_id))

    async def _record(self, execution_id: str, tenant_id: str | None = None) -> ExecutionRecord:
        return await commands.record(await self.store(), execution_id, tenant_id)

    async def resume(self, execution_id: str, *, tenant_id: str | None = None,
                     drive: bool = True) -> ExecutionResult:
        """Continue an interrupted or failed execution: checkpointed agents are reused, only
        what had not finished runs (the rules: ``commands.resume``). Completed, cancelled
        and awaiting-review executions are returned as they are. ``drive=False`` (the
        service) puts a failed execution back in the queue for a worker instead."""
        store = await self.store()
        rec, epoch = await commands.resume(store, execution_id, tenant_id, here=drive)
        if epoch is None:
            return replace(result_from_record(rec), existing=drive)
        return await self._drive(store, prepare(rec.definition), rec, epoch)

    async def review(self, execution_id: str, decision: str, *, reviewer: str | None = None,
                     tenant_id: str | None = None, drive: bool = True) -> ExecutionResult:
        """Decide an execution awaiting review (the rules: ``commands.review``); with
        ``drive`` the run continues here, else a worker takes it from the queue."""
        store = await self.store()
        rec, epoch = await commands.review(store, execution_id, decision, reviewer=reviewer,
                                           tenant_id=tenant_id, here=drive)
        if epoch is None:
            return result_from_record(rec)
        return await self._drive(store, prepare(rec.definition), rec, epoch)


def result_from_record(rec: ExecutionRecord) -> ExecutionResult:
    summary = rec.result or {}
    return ExecutionResult(
        rec.id, rec.status, summary.get("results", {}), summary.get("consensus"),
        rec.decision, summary.get("output"), rec.failed_agent, rec.failure_type, rec.error,
        summary.get("reused", []))
