"""Request and response bodies (pydantic v2)."""

from __future__ import annotations

from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from omium.engine.commands import MAX_DECISION_CHARS
from omium.status import STATUSES, Status

Item = TypeVar("Item")


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- errors: every 4xx body is one of these two
class ErrorOut(BaseModel):
    detail: str = Field(description="what went wrong, for a person")


class FieldError(BaseModel):
    model_config = ConfigDict(extra="allow")  # request-shape errors add input and ctx

    loc: str | list[str | int] = Field(description=(
        "where: request-shape problems give FastAPI's path (e.g. [\"body\", \"name\"]); "
        "workflow and input problems give Omium's readable path as one string "
        "(e.g. \"agents[0] (a).framework\", \"inputs.applicant\")"))
    msg: str = Field(description="why it is refused")
    type: str = Field(description="the kind of problem, e.g. workflow_invalid, "
                                  "inputs_invalid, enum, value_error, missing")


class ValidationErrorOut(BaseModel):
    detail: list[FieldError]


# The lifecycle of an execution (omium.status.STATUSES); "cancelling" is only ever an answer
# to a cancel request: a running execution flagged to stop. A Literal of the enum's values,
# not the enum: the spec keeps its inline string enums, the 422 messages their plain values.
ExecutionStatus = Literal[tuple(s.value for s in STATUSES)]  # type: ignore[valid-type]
CURSOR_DOC = ("opaque: pass a page's next_cursor back unchanged for the next page "
              "(null on the last page); any other value is a 422")


class Page(BaseModel, Generic[Item]):
    items: list[Item]
    next_cursor: str | None = Field(description=CURSOR_DOC)


# -- workflows
class WorkflowCreated(BaseModel):
    id: str
    name: str
    created_at: float


class WorkflowOut(WorkflowCreated):
    definition: dict[str, Any]


WorkflowPage = Page[WorkflowCreated]


# -- executions
class SubmitRequest(_In):
    workflow_id: str | None = Field(None, max_length=255)
    workflow: dict[str, Any] | None = None  # an inline definition: validated and registered
    inputs: Any = None  # default: the workflow's own ``inputs``, else {}
    idempotency_key: str | None = Field(None, min_length=1, max_length=255)


class StatusOut(BaseModel):
    execution_id: str
    status: ExecutionStatus | Literal[Status.CANCELLING.value]  # type: ignore[valid-type]


class ReviewRequest(_In):
    # approve or reject for a split vote or a paused failure; any text answers an agent's own
    # review request (checked against the execution by omium.engine.commands.review: 422).
    decision: str = Field(min_length=1, max_length=MAX_DECISION_CHARS,
                          examples=["approve", "reject"])
    reviewer: str | None = Field(None, max_length=255)
    comment: str | None = Field(None, max_length=4000)  # recorded in the review event


class ExecutionSummary(BaseModel):
    id: str
    workflow_id: str | None
    workflow_name: str
    status: ExecutionStatus
    decision: Any = None
    created_at: float
    updated_at: float
    finished_at: float | None


ExecutionPage = Page[ExecutionSummary]


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


class DetailTotals(BaseModel):
    """How many rows each list has in all (the detail shows the first ones)."""

    steps: int
    checkpoints: int
    handoffs: int
    consensus: int
    events: int
    usage_records: int


class DetailLinks(BaseModel):
    """Where each whole list is, a page at a time."""

    steps: str
    checkpoints: str
    handoffs: str
    consensus: str
    events: str  # .../history (``/events`` is the live event stream)
    usage_records: str


DETAIL_ITEMS = 100  # rows of each list in an execution's detail: it stays small
_FIRST = (f"the first {DETAIL_ITEMS} (oldest first); totals says how many there are, links "
          "where to page through all")


class ExecutionDetail(ExecutionSummary):
    inputs: Any
    idempotency_key: str | None
    cancel_requested: bool
    result: ResultOut | None
    failure: Failure | None
    steps: list[Step] = Field(description=_FIRST)
    checkpoints: list[Checkpoint] = Field(description=_FIRST)
    handoffs: list[Handoff] = Field(description=_FIRST)
    consensus: list[Vote] = Field(description=_FIRST)
    events: list[Event] = Field(description=_FIRST)
    usage: Usage  # its sums count every call; its records are the first ones
    lease: Lease
    totals: DetailTotals
    links: DetailLinks


# -- one execution's long lists, a page at a time (oldest first)
StepPage = Page[Step]
CheckpointPage = Page[Checkpoint]
HandoffPage = Page[Handoff]
VotePage = Page[Vote]
EventPage = Page[Event]
UsagePage = Page[UsageRecordOut]


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
