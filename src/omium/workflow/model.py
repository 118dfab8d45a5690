"""The workflow definition model: what a user writes in YAML/JSON, as pydantic models."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

AGENT_ID_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.\-]{0,127}$"
ExecutionOrder = Literal["sequential", "parallel", "dag"]
FailureStrategy = Literal["retry", "fallback", "rollback", "manual_review"]


class _Strict(BaseModel):
    # Unknown keys are almost always typos ("depends_ob"); reject them with their path.
    model_config = ConfigDict(extra="forbid")


class RetryPolicy(_Strict):
    """Attempts and exponential backoff.

    The wait after failed attempt n is ``min(backoff_s * multiplier**(n-1), max_backoff_s)``.
    """

    max_attempts: int = Field(3, ge=1, le=100)
    backoff_s: float = Field(0.5, ge=0, le=3600)
    multiplier: float = Field(2.0, ge=1, le=10)
    max_backoff_s: float = Field(30.0, ge=0, le=3600)

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt ``attempt`` (1-based) before the next one."""
        return min(self.backoff_s * self.multiplier ** (attempt - 1), self.max_backoff_s)


class ConsensusSpec(_Strict):
    """How parallel answers are reduced to one decision.

    ``threshold`` is the agreement share that must be exceeded (majority, weighted, threshold);
    ``cutoff`` is the value the mean is compared with for the ``threshold`` strategy.
    """

    strategy: Literal["majority", "unanimous", "threshold", "weighted"] = "majority"
    field: str | None = None
    threshold: float = Field(0.5, ge=0, le=1)
    cutoff: float | None = None
    above: Any = "approve"
    below: Any = "reject"
    weights: dict[str, float] = Field(default_factory=dict)
    on_disagreement: Literal["manual_review", "fail"] = "manual_review"

    @model_validator(mode="after")
    def _strategy_needs(self) -> ConsensusSpec:
        if self.strategy == "threshold" and (self.cutoff is None or self.field is None):
            raise ValueError("strategy 'threshold' needs 'field' (numeric) and 'cutoff'")
        if any(w < 0 for w in self.weights.values()):
            raise ValueError("weights must be >= 0")
        return self


class AgentSpec(_Strict):
    id: str = Field(pattern=AGENT_ID_PATTERN)
    framework: str = "python"
    definition: dict[str, Any] = Field(default_factory=dict)
    input_schema: dict[str, Any] | None = None
    output_schema: dict[str, Any] | None = None
    depends_on: list[str] = Field(default_factory=list)
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    timeout_s: float | None = Field(None, gt=0, le=86400)
    on_failure: FailureStrategy | None = None
    fallback: str | None = None
    max_rollbacks: int = Field(1, ge=0, le=10)
    consensus: ConsensusSpec | None = None  # only for framework: consensus (a DAG vote node)

    @property
    def strategy(self) -> FailureStrategy:
        """The recovery strategy once retries are exhausted; a named fallback implies 'fallback'."""
        if self.on_failure is not None:
            return self.on_failure
        return "fallback" if self.fallback else "retry"


class HandoffSettings(_Strict):
    timeout_s: float = Field(30.0, gt=0, le=3600)


class WorkflowDef(_Strict):
    name: str = Field("workflow", min_length=1, max_length=200)
    description: str = ""
    version: str | None = None
    execution_order: ExecutionOrder = "sequential"
    agents: list[AgentSpec] = Field(min_length=1, max_length=1000)
    consensus: ConsensusSpec | None = None
    inputs: dict[str, Any] | None = None
    handoff: HandoffSettings = Field(default_factory=HandoffSettings)
    # Reclaims after a lost worker before the execution is failed as a poison execution
    # (max_recoveries_exceeded) instead of run again; unset: the worker's default (3).
    max_recoveries: int | None = Field(None, ge=0, le=1000)
    # Where relative callables ("agents:kyc") are imported from; set by the file loader.
    base_dir: str | None = None

    def agent(self, agent_id: str) -> AgentSpec:
        for spec in self.agents:
            if spec.id == agent_id:
                return spec
        raise KeyError(agent_id)

    @property
    def fallback_ids(self) -> set[str]:
        """Agents that only run as another agent's fallback, never in the normal order."""
        return {a.fallback for a in self.agents if a.fallback}
