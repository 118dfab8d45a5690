"""``MultiAgentExecutor``: start, resume and review durable multi-agent executions."""

from __future__ import annotations

import asyncio
import json
import time
from typing import TYPE_CHECKING, Any

from omium.billing.ledger import Ledger
from omium.engine.attempts import Sleep
from omium.engine.plan import Plan, prepare
from omium.engine.result import ExecutionResult
from omium.engine.run import OnEvent, Run
from omium.errors import (
    ExecutionNotFoundError,
    ExecutionStateError,
    FieldProblem,
    InputValidationError,
)
from omium.schemas import first_error
from omium.store import open_store
from omium.store.base import Store
from omium.store.records import (
    AWAITING_REVIEW,
    FAILED,
    RUNNING,
    CheckpointRecord,
    EventRecord,
    ExecutionRecord,
)
from omium.workflow.model import WorkflowDef

if TYPE_CHECKING:
    from omium.llm.router import LLMRouter

REVIEW_DECISIONS = ("approve", "reject")


def check_inputs(plan: Plan, inputs: Any) -> None:
    """Validate inputs against every entry agent's input schema before anything is written."""
    problems = []
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
    """

    def __init__(self, store: Store | None = None, *, tenant_id: str = "local",
                 on_event: OnEvent | None = None, sleep: Sleep = asyncio.sleep,
                 router: LLMRouter | None = None) -> None:
        self._store = store
        self._owns_store = store is None
        self._router = router
        self._owns_router = router is None
        self._connected = False
        self.tenant_id = tenant_id
        self.on_event = on_event
        self.sleep = sleep

    async def store(self) -> Store:
        if self._store is None:
            self._store = open_store()
        if not self._connected:
            await self._store.connect()
            self._connected = True
        return self._store

    async def aclose(self) -> None:
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

    def _llm(self, store: Store, plan: Plan) -> LLMRouter | None:
        """The router for llm agents: given, or built from the LLM config on first need,
        billing the executor's store."""
        if self._router is None and any(a.framework == "llm" for a in plan.workflow.agents):
            # Imported here: aiohttp costs ~90 ms of start-up that python-only runs skip.
            from omium.llm.config import load_config
            from omium.llm.router import LLMRouter

            self._router = LLMRouter(load_config(), ledger=Ledger(store))
        return self._router

    def _run(self, store: Store, plan: Plan, rec: ExecutionRecord) -> Run:
        return Run(store, plan, rec, on_event=self.on_event, sleep=self.sleep,
                   llm=self._llm(store, plan))

    async def execute(self, execution_id: str,
                      workflow_def: Plan | WorkflowDef | dict[str, Any], inputs: Any = None, *,
                      source: str | None = None) -> ExecutionResult:
        """Start an execution and drive it to its end (or to a pause for review).

        An id that already exists is never started twice: its current state is returned
        (use ``resume`` to continue an interrupted one). Invalid definitions or inputs raise
        before anything is written.
        """
        plan = workflow_def if isinstance(workflow_def, Plan) else prepare(workflow_def,
                                                                            source=source)
        if inputs is None:
            inputs = plan.workflow.inputs if plan.workflow.inputs is not None else {}
        check_inputs(plan, inputs)
        store = await self.store()
        definition = plan.workflow.model_dump(mode="json", exclude_none=True)
        workflow_id = await store.put_workflow(plan.workflow.name, definition, self.tenant_id)
        rec, created = await store.create_execution(ExecutionRecord(
            execution_id, plan.workflow.name, definition, inputs, status=RUNNING,
            tenant_id=self.tenant_id, workflow_id=workflow_id))
        if not created:
            if rec.tenant_id != self.tenant_id:  # another tenant's id: it does not exist
                raise ExecutionNotFoundError(execution_id)
            return result_from_record(rec)
        return await self._run(store, plan, rec).drive(fresh=True)

    async def get(self, execution_id: str) -> ExecutionResult:
        return result_from_record(await self._record(execution_id))

    async def _record(self, execution_id: str, tenant_id: str | None = None) -> ExecutionRecord:
        rec = await (await self.store()).get_execution(execution_id)
        # Another tenant's execution does not exist, as far as the caller can tell.
        if rec is None or (tenant_id is not None and rec.tenant_id != tenant_id):
            raise ExecutionNotFoundError(execution_id)
        return rec

    async def resume(self, execution_id: str, *, tenant_id: str | None = None,
                     drive: bool = True) -> ExecutionResult:
        """Continue an interrupted or failed execution: checkpointed agents are reused, only
        what had not finished runs. Completed, cancelled and awaiting-review executions are
        returned as they are. ``drive=False`` (the service) puts a failed execution back in
        the queue for a worker instead of running it here."""
        store = await self.store()
        rec = await self._record(execution_id, tenant_id)
        if not drive:
            if rec.status == FAILED and await store.update_execution(
                    execution_id, status="queued", expect_status=[FAILED], events=[
                        EventRecord(execution_id, "resumed", None, {"from_status": FAILED},
                                    time.time())],
                    failed_agent=None, failure_type=None, error=None, finished_at=None,
                    cancel_requested=0):  # an old cancel request must not stop the new run
                rec = await self._record(execution_id)
            return result_from_record(rec)
        if rec.status not in (RUNNING, FAILED, "queued"):
            return result_from_record(rec)
        if rec.status == RUNNING and rec.lease_expires_at is not None:
            # Workers own it: a live one is running it, or one will reclaim it once the lease
            # expires. Driving it here too would run its agents twice, unfenced.
            raise ExecutionStateError(f"execution {execution_id} is run by workers (lease "
                                      f"holder {rec.lease_owner}); a worker reclaims it when "
                                      "its lease expires")
        plan = prepare(rec.definition)
        events = [EventRecord(execution_id, "resumed", None, {"from_status": rec.status},
                              time.time())]
        if rec.status == RUNNING:
            # The process that ran it died mid-flight (we are only called after that).
            events.append(EventRecord(execution_id, "failure_detected", None,
                                      {"failure_type": "worker_lost"}, time.time()))
        if not await store.update_execution(execution_id, status=RUNNING,
                                            expect_status=[rec.status], events=events,
                                            failed_agent=None, failure_type=None, error=None,
                                            finished_at=None):
            raise ExecutionStateError(f"execution {execution_id} changed while resuming")
        rec.status = RUNNING
        return await self._run(store, plan, rec).drive()

    async def review(self, execution_id: str, decision: str, *, reviewer: str | None = None,
                     tenant_id: str | None = None, drive: bool = True) -> ExecutionResult:
        """Decide an execution awaiting review.

        A split vote: the decision becomes the vote's result and the run continues (a
        parallel workflow completes). A failure paused for review: approve re-runs the failed
        agent, reject fails the execution.
        """
        if decision not in REVIEW_DECISIONS:
            raise ValueError(f"decision must be one of {REVIEW_DECISIONS}, got {decision!r}")
        store = await self.store()
        rec = await self._record(execution_id, tenant_id)
        if rec.status != AWAITING_REVIEW:
            raise ExecutionStateError(f"execution {execution_id} is {rec.status}, "
                                      "not awaiting_review")
        plan = prepare(rec.definition)
        event = EventRecord(execution_id, "review", rec.failed_agent,
                            {"decision": decision, "reviewer": reviewer}, time.time())
        if decision == "reject" and rec.failed_agent is not None:
            if not await store.update_execution(
                    execution_id, status=FAILED, expect_status=[AWAITING_REVIEW],
                    events=[event], error=f"rejected in review: {rec.error}",
                    finished_at=time.time()):
                raise ExecutionStateError(f"execution {execution_id} was reviewed already")
            return result_from_record(await self._record(execution_id))
        waiting = [c for c in await store.get_consensus(execution_id)
                   if c.outcome == "manual_review" and c.reviewed_decision is None]
        if waiting:
            # The vote's decision is written before the status changes: a worker that claims
            # the execution the moment it is queued must find the reviewed vote.
            vote = waiting[-1]
            if not await store.review_consensus(execution_id, vote.node_id, decision):
                raise ExecutionStateError(f"execution {execution_id} was reviewed already")
            output = {**vote.result, "decision": decision, "outcome": "reviewed",
                      "reviewed_by": reviewer or "human"}
            now = time.time()
            node = plan.nodes[vote.node_id]
            if not await store.save_checkpoint(
                    CheckpointRecord(execution_id, vote.node_id, node.index, 1, output, now,
                                     now),
                    events=[EventRecord(execution_id, "recovery_succeeded", vote.node_id,
                                        {"strategy": "manual_review"}, now)]):
                raise ExecutionStateError(f"execution {execution_id} was reviewed already")
        # The service hands the rest to a worker (queued); the CLI continues right here.
        if not await store.update_execution(execution_id, status=RUNNING if drive else "queued",
                                            expect_status=[AWAITING_REVIEW], events=[event],
                                            failed_agent=None, failure_type=None, error=None):
            raise ExecutionStateError(f"execution {execution_id} was reviewed already")
        if not drive:
            return result_from_record(await self._record(execution_id))
        rec.status = RUNNING
        return await self._run(store, plan, rec).drive()


def result_from_record(rec: ExecutionRecord) -> ExecutionResult:
    summary = rec.result or {}
    return ExecutionResult(
        rec.id, rec.status, summary.get("results", {}), summary.get("consensus"),
        rec.decision, summary.get("output"), rec.failed_agent, rec.failure_type, rec.error,
        summary.get("reused", []))
