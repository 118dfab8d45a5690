"""Failure classification: every failure gets one of the documented types."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omium.errors import AgentError, HandoffValidationError

FAILURE_TYPES = ("timeout", "exception", "validation_error", "no_consensus", "llm_error",
                 "worker_lost")


@dataclass
class Failure:
    agent_id: str
    failure_type: str
    error: str
    attempts: int = 0
    strategy: str = "retry"
    data: Any = None  # e.g. the reply that did not validate

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
    text = str(err)
    return f"{type(err).__name__}: {text}" if text else type(err).__name__
