"""The commands that change an execution — cancel, resume, review — and the status rules
behind them, in one place: the CLI, the API and the dashboard call these (DBOS keeps its in
``_workflow_commands.py``), so what each may do cannot drift apart.

``here=True`` is a caller that runs the execution itself afterwards (``omium resume``,
``omium review``): the command gives it the execution under a new lease and returns the
epoch to drive it with. ``here=False`` (the service) leaves the running to a worker: the
execution goes back to the queue.
"""

from __future__ import annotations

import time
from typing import Any

from omium.agents.runtime import REVIEW_REQUESTED
from omium.engine.graph import WorkflowGraph, prepare
from omium.engine.holder import holder_id, lease_fields, orphaned
from omium.errors import (
    ExecutionNotFoundError,
    ExecutionStateError,
    ReviewDecisionError,
    StaleLeaseError,
)
from omium.status import Status
from omium.store.base import Store
from omium.store.records import CheckpointRecord, ConsensusRecord, EventRecord, ExecutionRecord

REVIEW_DECISIONS = ("approve", "reject")
# An agent's own review request (a LangGraph interrupt()) is answered with any text, given
# back to the agent as it is; this bounds what one review may write.
MAX_DECISION_CHARS = 10_000
# What resume continues; any other status is returned as it is (nothing to resume).
RESUMABLE = (Status.RUNNING, Status.FAILED, Status.QUEUED)


async def record(store: Store, execution_id: str, tenant_id: str | None = None
                 ) -> ExecutionRecord:
    """The execution; another tenant's does not exist, as far as the caller can tell."""
    rec = await store.get_execution(execution_id)
    if rec is None or (tenant_id is not None and rec.tenant_id != tenant_id):
        raise ExecutionNotFoundError(execution_id)
    return rec


async def cancel(store: Store, execution_id: str, tenant_id: str | None = None) -> str:
    """"cancelled" at once (queued, failed, awaiting review, orphaned), or "cancelling": its
    live holder (a worker, a CLI run) stops it within a lease renewal. ``tenant_id`` None:
    any tenant's (the operator's CLI). An ended execution is an ``ExecutionStateError``."""
    if tenant_id is None:
        tenant_id = (await record(store, execution_id)).tenant_id
    after = await store.request_cancel(execution_id, tenant_id)
    if after is None:
        raise ExecutionNotFoundError(execution_id)
    return after


async def resume(store: Store, execution_id: str, tenant_id: str | None = None, *,
                 here: bool) -> tuple[ExecutionRecord, int | None]:
    """Continue a failed or interrupted execution: (its record, the epoch to drive it with
    here, or None when there is nothing for the caller to run)."""
    rec = await record(store, execution_id, tenant_id)
    if not here:
        if rec.status == Status.FAILED:
            # Of concurrent resumes one requeues it (and records "resumed"); the others
            # write nothing and report the status it has now.
            await store.update_execution(
                execution_id, status=Status.QUEUED, expect_status=[Status.FAILED], events=[
                    EventRecord(execution_id, "resumed", None, {"from_status": Status.FAILED},
                                time.time())],
                failed_agent=None, failure_type=None, error=None, finished_at=None,
                # An old cancel request must not stop the new run; a fixed poison
                # execution gets its full max_recoveries budget again.
                cancel_requested=0, recoveries=0)
            rec = await record(store, execution_id)
        return rec, None
    if rec.status not in RESUMABLE:
        return rec, None
    now = time.time()
    if rec.status == Status.RUNNING and rec.lease_expires_at is not None and not orphaned(
            rec.status, rec.lease_owner, rec.lease_expires_at, now):
        # Its holder (a worker, another omium run) is alive: running it here too would run
        # its agents twice. Once the lease expires it can be taken over.
        raise ExecutionStateError(
            f"execution {execution_id} is running (lease held by {rec.lease_owner} for "
            f"{rec.lease_expires_at - now:.0f} s more); it can be taken over once that lease "
            "expires")
    prepare(rec.definition)  # a definition that no longer loads is refused before any write
    events = [EventRecord(execution_id, "resumed", None, {"from_status": rec.status}, now)]
    if rec.status == Status.RUNNING:
        # Orphaned: the process that ran it stopped renewing its lease (or had none).
        events.append(EventRecord(execution_id, "failure_detected", None,
                                  {"failure_type": "worker_lost"}, now))
    epoch = rec.lease_epoch + 1  # the takeover fences out the old holder's writes
    try:
        taken = await store.update_execution(
            execution_id, status=Status.RUNNING, expect_status=[rec.status], events=events,
            epoch=rec.lease_epoch, failed_agent=None, failure_type=None, error=None,
            finished_at=None, recoveries=0, cancel_requested=0,
            **lease_fields(holder_id(), epoch))
    except StaleLeaseError:
        taken = False
    if not taken:
        raise ExecutionStateError(f"execution {execution_id} changed while resuming (a "
                                  "worker took it, or another resume)")
    rec.status = Status.RUNNING
    return rec, epoch


async def review(store: Store, execution_id: str, decision: str, *,
                 reviewer: str | None = None, tenant_id: str | None = None,
                 here: bool, comment: str | None = None) -> tuple[ExecutionRecord, int | None]:
    """Decide an execution awaiting review: (its record, the epoch to drive it with here,
    or None). A split vote: the decision becomes the vote's result and the run continues. A
    failure paused for review: approve re-runs the failed agent, reject fails it. An agent's
    own request (``ReviewRequested``): any decision, approve and reject included, re-runs
    it with the decision (a LangGraph graph resumes with ``Command(resume=decision)``)."""
    rec = await record(store, execution_id, tenant_id)
    if rec.status != Status.AWAITING_REVIEW:
        raise ExecutionStateError(f"execution {execution_id} is {rec.status}, "
                                  "not awaiting_review")
    check_decision(rec, decision)
    plan = prepare(rec.definition)
    now = time.time()
    said: dict[str, Any] = {"decision": decision, "reviewer": reviewer}
    if comment:  # the reviewer's reason, kept in the audit trail with the decision
        said["comment"] = comment
    events = [EventRecord(execution_id, "review", rec.failed_agent, said, now)]
    vote: CheckpointRecord | None = None
    fields: dict[str, Any]
    epoch: int | None = None
    if (decision == "reject" and rec.failed_agent is not None
            and rec.failure_type != REVIEW_REQUESTED):
        status, fields = Status.FAILED, {"error": f"rejected in review: {rec.error}",
                                          "finished_at": now}
    else:
        # The service hands the rest to a worker (queued); the CLI continues right here.
        status = Status.RUNNING if here else Status.QUEUED
        fields = {"failed_agent": None, "failure_type": None, "error": None}
        if here:
            epoch = rec.lease_epoch + 1
            fields.update(lease_fields(holder_id(), epoch))
        waiting = [c for c in await store.get_consensus(execution_id)
                   if c.outcome == "manual_review" and c.reviewed_decision is None]
        if waiting:
            vote = _reviewed_vote(plan, waiting[-1], decision, reviewer, now)
            events.insert(0, EventRecord(execution_id, "recovery_succeeded", vote.agent_id,
                                         {"strategy": "manual_review"}, now))
    # One transaction, only while it still awaits review: a review that lost to another
    # review or a cancel leaves no trace, and a worker that claims the execution the moment
    # it is queued finds the reviewed vote.
    if not await store.apply_review(execution_id, decision, status=status, events=events,
                                    vote=vote, **fields):
        current = await record(store, execution_id)
        raise ExecutionStateError(f"execution {execution_id} is {current.status}, "
                                  "not awaiting_review (reviewed or cancelled meanwhile)")
    if epoch is None:
        return await record(store, execution_id), None
    rec.status = Status.RUNNING
    return rec, epoch


def check_decision(rec: ExecutionRecord, decision: str) -> None:
    """Raise ReviewDecisionError unless ``decision`` answers what ``rec`` waits on."""
    if rec.failure_type == REVIEW_REQUESTED:  # the agent's own question: any answer
        if not decision.strip():
            raise ReviewDecisionError("must not be empty")
        if len(decision) > MAX_DECISION_CHARS:
            raise ReviewDecisionError(f"at most {MAX_DECISION_CHARS:,} characters, got "
                                      f"{len(decision):,}")
    elif decision not in REVIEW_DECISIONS:
        what = ("a failure paused for review" if rec.failed_agent is not None
                else "a split vote")
        raise ReviewDecisionError(f"{what} is decided with approve or reject, got "
                                  f"{decision[:100]!r}")


def _reviewed_vote(plan: WorkflowGraph, vote: ConsensusRecord, decision: str,
                   reviewer: str | None, now: float) -> CheckpointRecord:
    """The vote node's checkpoint once a human decided the split vote: the run reuses it."""
    output = {**vote.result, "decision": decision, "outcome": "reviewed",
              "reviewed_by": reviewer or "human"}
    node = plan.nodes[vote.node_id]
    return CheckpointRecord(vote.execution_id, vote.node_id, node.index, 1, output, now, now)
