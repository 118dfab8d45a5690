"""The storage interface, one protocol per concern; ``Store`` is their union.

Callers ask for the narrowest protocol they use (the ledger a ``BillingStore``, a run an
``ExecutionStore``), so what each part of Omium may do to the database reads off its type
hints. ``SqlStore`` implements all of them with the same SQL on SQLite and PostgreSQL.

Rows come out typed (``omium.store.records``): JSON columns decoded, flags as ``bool``, nano
amounts and counts as ``int`` on both backends.

Writes that take ``epoch`` are fenced: with an epoch they succeed only while the execution
still has that lease epoch, else they raise ``StaleLeaseError`` and write nothing.
"""

from __future__ import annotations

import asyncio
from abc import abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from omium.store.records import (
    ApiKeyRecord,
    CheckpointRecord,
    ConsensusRecord,
    CreditHold,
    DetailPart,
    DetailRow,
    EventRecord,
    ExecutionDetail,
    ExecutionRecord,
    GraphCheckpoint,
    GraphWrite,
    GraphWrites,
    HandoffRecord,
    LLMFailureCount,
    SchemaRevision,
    TenantRecord,
    UsageRecord,
    UsageSummary,
    WorkflowRecord,
)


class ExecutionStore(Protocol):
    """Workflows and executions and what happened in them: checkpoints, handoffs, events,
    votes and reviews, the LLM usage they incurred, and the API's one-hop detail."""

    # -- workflows
    @abstractmethod
    async def put_workflow(self, name: str, definition: dict[str, Any],
                           tenant_id: str = "local") -> str:
        """Store a definition (idempotent by content, per tenant); return its id."""

    @abstractmethod
    async def get_workflow(self, workflow_id: str) -> dict[str, Any] | None: ...

    @abstractmethod
    async def get_workflow_record(self, workflow_id: str,
                                  tenant_id: str | None = None) -> WorkflowRecord | None:
        """None as well if ``tenant_id`` is given and the workflow is another tenant's."""

    @abstractmethod
    async def list_workflows(self, tenant_id: str, *, limit: int = 50,
                             before: tuple[float, str] | None = None
                             ) -> list[WorkflowRecord]:
        """Newest first; ``before`` = (created_at, id) of the last row seen (keyset)."""

    # -- executions
    @abstractmethod
    async def create_execution(self, rec: ExecutionRecord) -> tuple[ExecutionRecord, bool]:
        """Insert unless the id exists (or the tenant used its idempotency key); return the
        stored row and whether it was created. A reused key with another workflow or other
        inputs raises ``IdempotencyKeyReusedError``."""

    @abstractmethod
    async def get_execution(self, execution_id: str) -> ExecutionRecord | None: ...

    @abstractmethod
    async def list_executions(self, *, status: str | None = None, tenant_id: str | None = None,
                              limit: int = 50, workflow_id: str | None = None,
                              before: tuple[float, str] | None = None,
                              workflow_name: str | None = None, since: float | None = None,
                              id_prefix: str | None = None) -> list[ExecutionRecord]:
        """Newest first; ``before`` = (created_at, id) of the last row seen (keyset). The
        filters that are given: ``since`` created at or after it, ``id_prefix`` ids that
        start with it."""

    @abstractmethod
    async def count_executions(self, *, tenant_id: str | None = None,
                               workflow_id: str | None = None,
                               workflow_name: str | None = None, since: float | None = None,
                               id_prefix: str | None = None) -> dict[str, int]:
        """Status -> how many executions match the filters (as ``list_executions``'s)."""

    @abstractmethod
    async def find_by_idempotency_key(self, tenant_id: str, key: str) -> str | None:
        """The id of the tenant's execution submitted with ``key``, if any."""

    @abstractmethod
    async def update_execution(self, execution_id: str, *, status: str,
                               expect_status: Sequence[str] | None = None,
                               events: Sequence[EventRecord] = (), epoch: int | None = None,
                               **fields: Any) -> bool:
        """Set status (and decision/result/error/failed_agent/failure_type/finished_at...)
        with ``events`` in one transaction; with ``expect_status`` only from those statuses.
        Returns whether the row changed; if it did not, nothing (no event) was written."""

    @abstractmethod
    async def apply_review(self, execution_id: str, decision: str, *, status: str,
                           events: Sequence[EventRecord] = (),
                           vote: CheckpointRecord | None = None, **fields: Any) -> bool:
        """A human review, in one transaction and only while the execution awaits review:
        set ``status`` and ``fields``, write ``events`` and, for a split vote, mark the vote
        node's waiting vote reviewed with ``decision`` and save ``vote`` (that node's
        checkpoint). False if it no longer awaits review (or the vote was reviewed): then
        nothing was written."""

    @abstractmethod
    async def request_cancel(self, execution_id: str, tenant_id: str) -> str | None:
        """Cancel now ("cancelled", with a ``cancelled`` event) or flag a worker's run
        ("cancelling"); None if it is not this tenant's. ``ExecutionStateError`` if it has
        ended (completed or cancelled)."""

    # -- checkpoints, handoffs, events, consensus
    @abstractmethod
    async def save_checkpoint(self, cp: CheckpointRecord,
                              handoffs: Sequence[HandoffRecord] = (),
                              events: Sequence[EventRecord] = (),
                              consensus: ConsensusRecord | None = None,
                              epoch: int | None = None,
                              finish: Mapping[str, Any] | None = None) -> bool:
        """Write the checkpoint with pending handoff records, events and a vote's result in
        one transaction. False (nothing written) if the agent already has a live checkpoint.

        ``finish`` (the last agent of a run): the execution's final ``status`` and fields
        (as ``update_execution`` takes them) in the same transaction, applied only while it
        is running; if it is not (cancelled meanwhile) nothing is written and
        ``ExecutionStateError`` is raised."""

    @abstractmethod
    async def get_checkpoints(self, execution_id: str, *,
                              include_superseded: bool = False) -> list[CheckpointRecord]: ...

    @abstractmethod
    async def supersede_checkpoints(self, execution_id: str, agent_ids: Sequence[str],
                                    events: Sequence[EventRecord] = (),
                                    epoch: int | None = None) -> int:
        """Mark the agents' live checkpoints superseded (a rollback); returns how many."""

    @abstractmethod
    async def add_handoffs(self, records: Sequence[HandoffRecord],
                           epoch: int | None = None) -> None: ...

    @abstractmethod
    async def get_handoffs(self, execution_id: str) -> list[HandoffRecord]: ...

    @abstractmethod
    async def add_events(self, events: Sequence[EventRecord],
                         epoch: int | None = None) -> None: ...

    @abstractmethod
    async def get_events(self, execution_id: str) -> list[EventRecord]: ...

    @abstractmethod
    async def save_consensus(self, rec: ConsensusRecord, events: Sequence[EventRecord] = (),
                             epoch: int | None = None) -> None: ...

    @abstractmethod
    async def get_consensus(self, execution_id: str) -> list[ConsensusRecord]: ...

    @abstractmethod
    async def review_consensus(self, execution_id: str, node_id: str, decision: str) -> bool:
        """Record a human decision on a consensus awaiting review; False if none awaits."""

    @abstractmethod
    async def usage_records(self, *, tenant_id: str | None = None,
                            execution_id: str | None = None) -> list[UsageRecord]:
        """The LLM calls billed (``BillingStore`` writes them), oldest first."""

    # -- what the API reads of one execution
    @abstractmethod
    async def execution_detail(self, execution_id: str, tenant_id: str, *,
                               limit: int | None = None) -> ExecutionDetail | None:
        """The execution and each of its lists in one round trip; None if it is not this
        tenant's. With ``limit``, the first rows of each list and ``totals``."""

    @abstractmethod
    async def execution_rows(self, execution_id: str, tenant_id: str, part: DetailPart, *,
                             after: int = 0, limit: int = 100) -> list[DetailRow] | None:
        """A page of one list of ``execution_detail``, oldest first: the records whose ``id``
        is above ``after``. None if the execution is not this tenant's."""


class BillingStore(Protocol):
    """Tenants' balances in nano-dollars, credit holds, usage records, backend failures."""

    @abstractmethod
    async def get_tenant(self, tenant_id: str) -> TenantRecord | None: ...

    @abstractmethod
    async def add_credits(self, tenant_id: str, nano: int) -> int:
        """Add (or, negative, remove) nano-dollars, creating a limited tenant if missing;
        returns the new balance."""

    @abstractmethod
    async def set_overdraft(self, tenant_id: str, nano: int) -> bool:
        """How far below zero holds may take a limited tenant; False if no such tenant."""

    @abstractmethod
    async def charge_usage(self, rec: UsageRecord) -> bool:
        """Record usage and lower the balance atomically; False if the key was charged."""

    # -- credit holds: a call's estimate reserved before it is sent (see billing.ledger)
    @abstractmethod
    async def reserve_credit(self, hold: CreditHold) -> bool:
        """Lower a limited tenant's balance by the hold and record it, in one transaction,
        only if the balance stays >= -overdraft; False (nothing written) otherwise, or if
        the tenant is unlimited or unknown."""

    @abstractmethod
    async def settle_usage(self, rec: UsageRecord, hold: CreditHold) -> bool:
        """``charge_usage`` plus giving the hold back, in one transaction (the balance moves
        by hold - cost); a hold already released leaves a plain charge."""

    @abstractmethod
    async def release_hold(self, hold: CreditHold) -> bool:
        """Give the hold back; False if it was settled or released already."""

    @abstractmethod
    async def release_expired_holds(self, now: float, tenant_id: str | None = None) -> int:
        """Release the holds that expired before ``now``; returns how many."""

    @abstractmethod
    async def credit_holds(self, tenant_id: str) -> list[CreditHold]: ...

    # -- reports
    @abstractmethod
    async def usage_summary(self, *, tenant_id: str | None = None,
                            since_day: str | None = None) -> list[UsageSummary]:
        """Calls, tokens and cost by tenant, day and model."""

    @abstractmethod
    async def add_llm_failure(self, backend: str, kind: str, error: str,
                              tenant_id: str | None) -> None: ...

    @abstractmethod
    async def llm_failures(self, *, since: float = 0.0) -> list[LLMFailureCount]:
        """Failures recorded at or after ``since``, counted by backend and kind."""


class TenantStore(Protocol):
    """Creating and listing tenants, and their API keys (stored as hashes)."""

    @abstractmethod
    async def create_tenant(self, tenant_id: str, name: str | None = None, *,
                            limited: bool = True) -> bool:
        """False (nothing written) if the id exists."""

    @abstractmethod
    async def list_tenants(self) -> list[TenantRecord]: ...

    @abstractmethod
    async def create_api_key(self, key_hash: str, prefix: str, tenant_id: str | None, *,
                             admin: bool = False) -> None: ...

    @abstractmethod
    async def find_api_key(self, key_hash: str) -> ApiKeyRecord | None: ...

    @abstractmethod
    async def revoke_api_key(self, key_hash: str) -> bool:
        """False if the key is unknown or revoked already."""

    @abstractmethod
    async def end_session(self, nonce: str, expires_at: float) -> None:
        """Record a dashboard session (its nonce) as signed out until ``expires_at``, when
        its cookie would expire anyway; entries past their expiry are dropped here."""

    @abstractmethod
    async def session_ended(self, nonce: str) -> bool:
        """Whether the session with this nonce was signed out."""


class LeaseStore(Protocol):
    """Workers' claims on queued executions, their leases, and the workers themselves."""

    @abstractmethod
    async def claim_execution(self, worker_id: str, lease_s: float, *, suspects: bool = True
                              ) -> tuple[ExecutionRecord, bool] | None:
        """Take the oldest claimable execution: (it with its new lease epoch, whether it was
        reclaimed from a lost worker); None if there is none."""

    @abstractmethod
    async def claim_executions(self, worker_id: str, lease_s: float, limit: int, *,
                               suspects: bool = True) -> list[tuple[ExecutionRecord, bool]]:
        """Take up to ``limit`` of the oldest claimable executions in one transaction:
        ``[(it with its new lease epoch, reclaimed), ...]``, oldest first; ``[]`` if none.
        While a suspect (a lease expired, or requeued after a reclaim) waits, at most one:
        the oldest claimable with ``suspects=True``, none with ``suspects=False``. O(limit
        log n) whatever the history. The same transaction records each claim's events:
        ``claimed`` {worker, epoch, reclaimed}, and for a reclaim ``failure_detected``
        {failure_type: worker_lost, recoveries}."""

    @abstractmethod
    async def renew_lease(self, execution_id: str, epoch: int,
                          lease_s: float) -> tuple[bool, bool]:
        """(still ours, cancel requested)."""

    @abstractmethod
    async def renew_leases(self, held: Sequence[tuple[str, int]], lease_s: float
                           ) -> dict[str, tuple[bool, bool]]:
        """Renew every ``(execution_id, epoch)`` a worker holds in one statement:
        ``{execution_id: (still ours, cancel requested)}`` for each one given."""

    @abstractmethod
    async def release_lease(self, execution_id: str, epoch: int) -> bool:
        """Give an unfinished execution back to the queue; False if it is no longer ours."""

    @abstractmethod
    def queue_signal(self) -> asyncio.Event:
        """An event set the next time this process queues an execution on this store (a
        submit, a requeue, a released lease): take it before looking at the queue, and an
        idle worker wakes at once instead of at its next poll. What another process queues
        is seen at the poll."""

    @abstractmethod
    async def queue_depth(self) -> int:
        """Executions waiting for a worker (a count over the queue's index)."""

    @abstractmethod
    async def worker_heartbeat(self, worker_id: str, host: str, pid: int,
                               running: int) -> None: ...

    @abstractmethod
    async def worker_stopped(self, worker_id: str) -> None: ...

    @abstractmethod
    async def live_workers(self, within_s: float) -> int:
        """Workers not stopped whose last heartbeat is at most ``within_s`` old."""


class GraphCheckpointStore(Protocol):
    """LangGraph checkpoints and pending writes (``omium.contrib.langgraph``'s saver), by
    thread and namespace; the saver serialises them, the store keeps bytes. Checkpoint ids
    order as their bytes do (LangGraph's ids are time-ordered) on both backends.

    With ``epoch`` (and the execution) a write is fenced like the run's own writes."""

    @abstractmethod
    async def put_graph_checkpoint(self, cp: GraphCheckpoint, *, epoch: int | None = None,
                                   writes: Sequence[GraphWrites] = (),
                                   earlier: Sequence[GraphCheckpoint] = ()) -> None:
        """Insert it, or replace the one with the same thread, namespace and id (its writes
        stay). ``writes`` (tasks' writes, as ``put_graph_writes`` stores them) go in the same
        transaction, before it: one commit for a super-step's writes and its checkpoint.
        ``earlier`` checkpoints (the same execution's) are put in it too, before this one."""

    @abstractmethod
    async def put_graph_writes(self, thread_id: str, checkpoint_ns: str, checkpoint_id: str,
                               writes: Sequence[GraphWrite], *, execution_id: str | None = None,
                               epoch: int | None = None) -> None:
        """Store a task's writes on a checkpoint: a write whose (task, idx) is stored already
        is kept as it was, except the special channels' (negative idx), which replace it."""

    @abstractmethod
    async def get_graph_checkpoint(self, thread_id: str, checkpoint_ns: str,
                                   checkpoint_id: str | None = None
                                   ) -> GraphCheckpoint | None:
        """That checkpoint (the newest of the thread and namespace when ``checkpoint_id`` is
        None), with its pending writes; None if there is none."""

    @abstractmethod
    async def list_graph_checkpoints(self, *, thread_id: str | None = None,
                                     checkpoint_ns: str | None = None,
                                     checkpoint_id: str | None = None,
                                     before: str | None = None,
                                     metadata: Mapping[str, Any] | None = None,
                                     limit: int | None = None) -> list[GraphCheckpoint]:
        """Newest first, each with its pending writes: the filters that are given (``before``:
        ids below it; ``metadata``: every key equal), at most ``limit``."""

    @abstractmethod
    async def delete_graph_thread(self, thread_id: str) -> None:
        """Every checkpoint and write of the thread, in every namespace."""


class WorkerStore(ExecutionStore, LeaseStore, BillingStore, Protocol):
    """What a worker uses: it claims executions, runs them, and bills their LLM calls."""


class Store(ExecutionStore, BillingStore, TenantStore, LeaseStore,
            GraphCheckpointStore, Protocol):
    """Every concern, and the connection: what ``open_store`` returns. All methods are
    coroutine-safe."""

    url: str

    @abstractmethod
    async def connect(self) -> None:
        """Open connections and bring the schema to the current migration."""

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    async def schema_revision(self) -> SchemaRevision:
        """The database's migration revision and the one this code expects."""

    async def __aenter__(self) -> Store:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

