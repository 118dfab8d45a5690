"""Request and response bodies (pydantic v2)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- workflows
class WorkflowCreated(BaseModel):
    id: str
    name: str
    created_at: float


class WorkflowOut(WorkflowCreated):
    definition: dict[str, Any]


class WorkflowPage(BaseModel):
    items: list[WorkflowCreated]
    next_cursor: str | None


# -- executions
class SubmitRequest(_In):
    workflow_id: str | None = Field(None, max_length=255)
    workflow: dict[str, Any] | None = None  # an inline definition: validated and registered
    inputs: Any = None  # default: the workflow's own ``inputs``, else {}
    idempotency_key: str | None = Field(None, min_length=1, max_length=255)


class StatusOut(BaseModel):
    execution_id: str
    status: str


class ReviewRequest(_In):
    decision: Literal["approve", "reject"]
    reviewer: str | None = Field(None, max_length=255)


class ExecutionSummary(BaseModel):
    id: str
    workflow_id: str | None
    workflow_name: str
    status: str
    decision: Any = None
    created_at: float
    updated_at: float
    finished_at: float | None


class ExecutionPage(BaseModel):
    items: list[ExecutionSummary]
    next_cursor: str | None


class Step(BaseModel):
    agent_id: str
    status: Literal["done", "superseded"]
    attempt: int
    duration_s: float
    served_by: str | None
    started_at: float
    finished_at: float


class Checkpoint(BaseModel):
    agent_id: str
    agent_index: int
    attempt: int
    output: Any
    served_by: str | None
    superseded: bool
    started_at: float
    finished_at: float
    lease_epoch: int


class Handoff(BaseModel):
    from_agent: str
    to_agents: list[str]
    status: str
    acks: Any
    reason: str | None
    error: str | None
    latency_ms: float
    created_at: float


class Vote(BaseModel):
    node_id: str
    result: Any
    outcome: str
    decision: Any
    agreement_level: float
    created_at: float
    reviewed_decision: str | None
    reviewed_at: float | None


class Event(BaseModel):
    id: int
    ts: float
    type: str
    agent_id: str | None
    data: Any


class UsageRecordOut(BaseModel):
    backend: str
    model: str
    model_type: str
    agent_id: str | None
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    estimated: bool
    used_fallback: bool
    cost_usd: str


class Usage(BaseModel):
    calls: int
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    cost_usd: str  # exact decimal dollars, as a string
    records: list[UsageRecordOut]


class ResultOut(BaseModel):
    results: dict[str, Any]
    consensus: Any
    output: Any
    reused: list[str]


class Failure(BaseModel):
    failed_agent: str | None
    failure_type: str | None
    error: str | None


class Lease(BaseModel):
    owner: str | None
    epoch: int
    expires_at: float | None


class ExecutionDetail(ExecutionSummary):
    inputs: Any
    idempotency_key: str | None
    cancel_requested: bool
    result: ResultOut | None
    failure: Failure | None
    steps: list[Step]
    checkpoints: list[Checkpoint]
    handoffs: list[Handoff]
    consensus: list[Vote]
    events: list[Event]
    usage: Usage
    lease: Lease


# -- tenants
class TenantCreate(_In):
    name: str = Field(min_length=1, max_length=255)
    limited: bool = True  # False: LLM calls are not checked against a credit balance


class TenantKey(BaseModel):
    tenant_id: str
    api_key: str  # shown once; only its hash is stored


class TenantOut(BaseModel):
    id: str
    name: str
    balance_credits: str
    limited: bool
    created_at: float
