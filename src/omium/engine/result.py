"""What an execution returns to its caller."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from omium.billing.money import nano_to_dollars
from omium.status import Status

if TYPE_CHECKING:
    from omium.store.base import BillingStore


@dataclass
class ExecutionResult:
    execution_id: str
    status: str  # one of omium.status.STATUSES
    results: dict[str, Any] = field(default_factory=dict)  # agent id -> output
    consensus: dict[str, Any] | None = None  # with "agreement_level", "decision", "outcome"
    decision: Any = None
    output: Any = None  # the final agent's output (sinks by id when there are several)
    failed_agent: str | None = None
    failure_type: str | None = None
    error: str | None = None
    reused: list[str] = field(default_factory=list)  # agents taken from checkpoints this run
    # LLM calls billed to this execution: calls, prompt/completion tokens, cost_usd (str)
    usage: dict[str, Any] | None = None
    # Not started by this call: it existed already (an --execution-id reused, a resume of an
    # execution that had ended); the fields say how it stands.
    existing: bool = False

    @property
    def ok(self) -> bool:
        return self.status == Status.COMPLETED

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


async def usage_summary(store: BillingStore, execution_id: str) -> dict[str, Any] | None:
    """The LLM calls billed to an execution so far (every drive, llm agents and framework
    agents through the gateway alike), as ``ExecutionResult.usage``; None when there were none."""
    records = await store.usage_records(execution_id=execution_id)
    if not records:
        return None
    return {"calls": len(records),
            "prompt_tokens": sum(r.prompt_tokens for r in records),
            "completion_tokens": sum(r.completion_tokens for r in records),
            "cost_usd": str(nano_to_dollars(sum(r.cost_nano for r in records)))}
