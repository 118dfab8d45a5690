"""The rows the store keeps, as plain dataclasses (JSON columns already decoded)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from omium.status import Status


@dataclass
class ExecutionRecord:
    id: str
    workflow_name: str
    definition: dict[str, Any]
    inputs: Any
    status: str = Status.QUEUED
    tenant_id: str = "local"
    workflow_id: str | None = None
    decision: Any = None
    result: dict[str, Any] | None = None
    error: str | None = None
    failed_agent: str | None = None
    failure_type: str | None = None
    created_at: float = 0.0
    updated_at: float = 0.0
    finished_at: float | None = None
    idempotency_key: str | None = None
    lease_owner: str | None = None
    lease_expires_at: float | None = None
    lease_epoch: int = 0  # incremented by every claim; writes carry it (fencing)
    cancel_requested: bool = False
    recoveries: int = 0  # reclaims after a lost worker (dead-lettered past max_recoveries)


@dataclass
class CheckpointRecord:
    """A finished agent: written in the same transaction that marks its step done."""

    execution_id: str
    agent_id: str
    agent_index: int
    attempt: int
    output: Any
    started_at: float
    finished_at: float
    served_by: str | None = None  # the fallback agent that produced the output, if any
    superseded: bool = False  # set by a rollback; a superseded checkpoint is not reused
    lease_epoch: int = 0
    id: int | None = None


@dataclass
class EventRecord:
    """Something that happened to an execution: failures, recoveries, attempts, reviews."""

    execution_id: str
    type: str
    agent_id: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    ts: float = 0.0
    id: int | None = None


@dataclass
class ConsensusRecord:
    execution_id: str
    node_id: str
    result: dict[str, Any]
    outcome: str
    decision: Any
    agreement_level: float
    created_at: float = 0.0
    reviewed_decision: str | None = None
    reviewed_at: float | None = None
    id: int | None = None


@dataclass
class HandoffRecord:
    """The stored form of one handoff (``coordination.handoff`` makes them)."""

    execution_id: str
    from_agent: str
    to_agents: list[str]
    status: str
    acks: dict[str, dict[str, Any]]
    reason: str | None
    error: str | None
    latency_ms: float
    created_at: float
    id: int | None = None


@dataclass
class TenantRecord:
    id: str
    name: str
    balance_nano: int  # exact: 1 credit = $0.01 = 10_000_000 nano-dollars
    limited: bool  # False: no budget check (the CLI's "local" tenant by default)
    created_at: float = 0.0
    overdraft_nano: int = 0  # how far below zero a limited tenant may go


@dataclass
class CreditHold:
    """A call's estimated cost, taken off a limited tenant's balance before the call is sent
    and settled to the exact charge (or given back) afterwards; released once it expires."""

    id: str
    tenant_id: str
    amount_nano: int
    created_at: float
    expires_at: float


@dataclass
class UsageRecord:
    """One LLM call's usage and cost; written with the balance change in one transaction."""

    idempotency_key: str
    tenant_id: str
    backend: str
    model: str
    model_type: str
    prompt_tokens: int
    completion_tokens: int
    cost_nano: int
    latency_ms: float
    cached_tokens: int = 0
    estimated: bool = False
    used_fallback: bool = False
    execution_id: str | None = None
    agent_id: str | None = None
    created_at: float = 0.0
    day: str = ""
    id: int | None = None


@dataclass
class ApiKeyRecord:
    key_hash: str
    prefix: str
    tenant_id: str | None  # None for admin keys
    admin: bool
    created_at: float
    revoked_at: float | None = None


@dataclass
class WorkflowRecord:
    id: str
    name: str
    tenant_id: str
    definition: dict[str, Any]
    created_at: float


@dataclass
class UsageSummary:
    """Calls, tokens and cost of one tenant's calls to one model on one day."""

    tenant_id: str
    day: str
    model: str
    model_type: str
    calls: int
    prompt_tokens: int
    completion_tokens: int
    cost_nano: int
    fallbacks: int
    estimated: int


@dataclass
class LLMFailureCount:
    backend: str  # "*": every backend failed a call
    kind: str
    n: int
    last_ts: float


@dataclass
class DetailTotals:
    """Every row of each of an execution's lists counted, and all its usage summed."""

    checkpoints: int
    handoffs: int
    consensus: int
    events: int
    usage: int
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    cost_nano: int


# The lists of an execution's detail, each paged on its own by ``id``.
DetailPart = Literal["checkpoints", "handoffs", "consensus", "events", "usage"]
DetailRow = CheckpointRecord | HandoffRecord | ConsensusRecord | EventRecord | UsageRecord


@dataclass
class ExecutionDetail:
    """An execution and its lists, oldest first; with a limit, their first rows and
    ``totals``."""

    execution: ExecutionRecord
    checkpoints: list[CheckpointRecord]
    handoffs: list[HandoffRecord]
    consensus: list[ConsensusRecord]
    events: list[EventRecord]
    usage: list[UsageRecord]
    totals: DetailTotals | None = None


@dataclass
class GraphWrite:
    """A pending write of one task of a LangGraph super-step (``put_writes``): its value
    serialised by the saver (``type`` names the serialiser's format)."""

    task_id: str
    idx: int  # the write's index in its task; negative for the special channels
    channel: str
    type: str
    value: bytes
    task_path: str = ""


@dataclass
class GraphWrites:
    """Tasks' writes on one checkpoint, stored with another checkpoint in one transaction
    (``put_graph_checkpoint(..., writes=...)``)."""

    thread_id: str
    checkpoint_ns: str
    checkpoint_id: str
    writes: list[GraphWrite]


@dataclass
class GraphCheckpoint:
    """One LangGraph checkpoint of a thread and namespace, serialised by the saver; read back
    with its pending writes (in the order LangGraph applies them)."""

    thread_id: str
    checkpoint_ns: str
    checkpoint_id: str
    parent_checkpoint_id: str | None
    type: str
    checkpoint: bytes
    metadata: dict[str, Any]
    execution_id: str | None = None  # the Omium execution it belongs to, if any
    created_at: float = 0.0
    writes: list[GraphWrite] = field(default_factory=list)


@dataclass(frozen=True)
class SchemaRevision:
    current: str | None  # None: no schema yet
    expected: str  # the newest migration this code knows

    @property
    def up_to_date(self) -> bool:
        return self.current == self.expected
