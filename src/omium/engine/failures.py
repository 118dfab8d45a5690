"""Failure classification: every failure gets one of the documented types."""

from __future__ import annotations

from dataclasses import dataclass

from omium.errors import AgentCrashedError, AgentError, HandoffValidationError

# max_recoveries_exceeded: the execution's worker was lost more often than its
# max_recoveries allows (a poison execution); it is failed instead of being run again.
FAILURE_TYPES = ("timeout", "exception", "validation_error", "no_consensus", "llm_error",
                 "worker_lost", "max_recoveries_exceeded")


@dataclass
class Failure:
    agent_id: str
    failure_type: str
    error: str
    attempts: int = 0
    strategy: str = "retry"

    def __str__(self) -> str:
        return f"{self.agent_id}: {self.failure_type}: {self.error}"


def classify(err: BaseException) -> str:
    if isinstance(err, TimeoutError):
        return "timeout"
    if isinstance(err, HandoffValidationError):
        return "validation_error"
    if isinstance(err, AgentError):
        return err.failure_type
    return "exception"


def describe(err: BaseException) -> str:
    if isinstance(err, AgentCrashedError):  # already "SystemExit: 3", the agent's own words
        return str(err)
    text = str(err)
    return f"{type(err).__name__}: {text}" if text else type(err).__name__
