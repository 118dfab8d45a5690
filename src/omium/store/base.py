"""The one storage interface; SQLite and PostgreSQL implement it with the same SQL."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from omium.store.records import (
    ApiKeyRecord,
    CheckpointRecord,
    ConsensusRecord,
    CreditHold,
    EventRecord,
    ExecutionRecord,
    TenantRecord,
    UsageRecord,
    WorkflowRecord,
)

if TYPE_CHECKING:
    from omium.coordination.handoff import HandoffRecord


class Store(ABC):
    """Durable state of workflows and executions. All methods are coroutine-safe.

    Writes that take ``epoch`` are fenced: with an epoch they succeed only while the execution
    still has that lease epoch, else they raise ``StaleLeaseError`` and write nothing.
    """

    url: str

    @abstractmethod
    async def connect(self) -> None:
        """Open connections and bring the schema to the current migration."""

    @abstractmethod
    async def close(self) -> None: ...

    async def __aenter__(self) -> Store:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- workflows
    @abstractmethod
    async def put_workflow(self, name: str, definition: dict[str, Any],
                           tenant_id: str = "local") -> str:
        """Store a definition (idempotent by content, per tenant); return its id."""

    @abstractmethod
    async def get_workflow(self, workflow_id: str) -> dict[str, Any] | None: ...

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
                              before: tuple[float, str] | None = None
                              ) -> list[ExecutionRecord]:
        """Newest first; ``before`` = (created_at, id) of the last row seen (keyset)."""

    @abstractmethod
    async def update_execution(self, execution_id: str, *, status: str,
                               expect_status: Sequence[str] | None = None,
                               events: Sequence[EventRecord] = (), epoch: int | None = None,
                               **fields: Any) -> bool:
        """Set status (and decision/result/error/failed_agent/failure_type/finished_at) with
        ``events`` in one transaction; with ``expect_status`` only from those statuses.
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

    # -- checkpoints, handoffs, events, consensus
    @abstractmethod
    async def save_checkpoint(self, cp: CheckpointRecord,
                              handoffs: Sequence[HandoffRecord] = (),
                              events: Sequence[EventRecord] = (),
                              consensus: ConsensusRecord | None = None,
                              epoch: int | None = None) -> bool:
        """Write the checkpoint with pending handoff records, events and a vote's result in
        one transaction. False (nothing written) if the agent already has a live checkpoint."""

    @abstractmethod
    async def get_checkpoints(self, execution_id: str, *,
                              include_superseded: bool = False) -> list[CheckpointRecord]: ...

    @abstractmethod
    async def supersede_checkpoints(self, execution_id: str, agent_ids: Sequence[str],
                                    events: Sequence[EventRecord] = (),
                                    epoch: int | None = None) -> int: ...

    @abstractmethod
    async def add_handoffs(self, records: Sequence[HandoffRecord],
                           epoch: int | None = None) -> None: ...

    @abstractmethod
    async def get_handoffs(self, execution_id: str) -> list[dict[str, Any]]: ...

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

    # -- billing (tenants, balances in nano-dollars, usage records)
    @abstractmethod
    async def get_tenant(self, tenant_id: str) -> TenantRecord | None: ...

    @abstractmethod
    async def create_tenant(self, tenant_id: str, name: str | None = None, *,
                            limited: bool = True) -> bool: ...

    @abstractmethod
    async def add_credits(self, tenant_id: str, nano: int) -> int: ...

    @abstractmethod
    async def charge_usage(self, rec: UsageRecord) -> bool:
        """Record usage and lower the balance atomically; False if the key was charged."""

    @abstractmethod
    async def set_overdraft(self, tenant_id: str, nano: int) -> bool:
        """How far below zero holds may take a limited tenant; False if no such tenant."""

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

    @abstractmethod
    async def usage_records(self, *, tenant_id: str | None = None,
                            execution_id: str | None = None) -> list[UsageRecord]: ...

    @abstractmethod
    async def usage_summary(self, *, tenant_id: str | None = None,
                            since_day: str | None = None) -> list[dict[str, Any]]: ...

    @abstractmethod
    async def add_llm_failure(self, backend: str, kind: str, error: str,
                              tenant_id: str | None) -> None: ...

    @abstractmethod
    async def llm_failures(self, *, since: float = 0.0) -> list[dict[str, Any]]: ...

    # -- the service: keys, workflows by tenant, leases, workers
    @abstractmethod
    async def create_api_key(self, key_hash: str, prefix: str, tenant_id: str | None, *,
                             admin: bool = False) -> None: ...

    @abstractmethod
    async def find_api_key(self, key_hash: str) -> ApiKeyRecord | None: ...

    @abstractmethod
    async def revoke_api_key(self, key_hash: str) -> bool: ...

    @abstractmethod
    async def list_tenants(self) -> list[TenantRecord]: ...

    @abstractmethod
    async def get_workflow_record(self, workflow_id: str,
                                  tenant_id: str | None = None) -> WorkflowRecord | None: ...

    @abstractmethod
    async def list_workflows(self, tenant_id: str, *, limit: int = 50,
                             before: tuple[float, str] | None = None
                             ) -> list[WorkflowRecord]: ...

    @abstractmethod
    async def find_by_idempotency_key(self, tenant_id: str, key: str) -> str | None: ...

    @abstractmethod
    async def execution_detail(self, execution_id: str, tenant_id: str, *,
                               limit: int | None = None
                               ) -> dict[str, list[dict[str, Any]]] | None:
        """Rows of the execution and of each of its lists; with ``limit``, the first rows of
        each list and a ``totals`` row."""

    @abstractmethod
    async def execution_rows(self, execution_id: str, tenant_id: str, part: str, *,
                             after: int = 0, limit: int = 100
                             ) -> list[dict[str, Any]] | None:
        """A page of one list of ``execution_detail``, after the row ``row_id`` ``after``."""

    @abstractmethod
    async def request_cancel(self, execution_id: str, tenant_id: str) -> str | None:
        """Cancel now ("cancelled", with a ``cancelled`` event) or flag a worker's run
        ("cancelling"); None if it is not this tenant's. ``ExecutionStateError`` if it has
        ended (completed or cancelled)."""

    @abstractmethod
    async def claim_execution(self, worker_id: str, lease_s: float, *, suspects: bool = True
                              ) -> tuple[ExecutionRecord, bool] | None: ...

    @abstractmethod
    async def renew_lease(self, execution_id: str, epoch: int,
                          lease_s: float) -> tuple[bool, bool]: ...

    @abstractmethod
    async def release_lease(self, execution_id: str, epoch: int) -> bool: ...

    @abstractmethod
    async def queue_depth(self) -> int: ...

    @abstractmethod
    async def worker_heartbeat(self, worker_id: str, host: str, pid: int,
                               running: int) -> None: ...

    @abstractmethod
    async def worker_stopped(self, worker_id: str) -> None: ...

    @abstractmethod
    async def live_workers(self, within_s: float) -> int: ...
