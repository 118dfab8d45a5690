"""The engine: plans, the executor, checkpoints, resume and recovery."""

from omium.engine.executor import MultiAgentExecutor, check_inputs
from omium.engine.failures import FAILURE_TYPES, Failure
from omium.engine.plan import Plan, prepare
from omium.engine.result import ExecutionResult
from omium.engine.worker import Worker

__all__ = [
    "FAILURE_TYPES",
    "ExecutionResult",
    "Failure",
    "MultiAgentExecutor",
    "Plan",
    "Worker",
    "check_inputs",
    "prepare",
]
