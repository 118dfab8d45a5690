"""The engine: workflow graphs, the executor, checkpoints, resume and recovery."""

from omium.engine.executor import MultiAgentExecutor, check_inputs
from omium.engine.failures import FAILURE_TYPES, Failure
from omium.engine.graph import WorkflowGraph, prepare
from omium.engine.result import ExecutionResult
from omium.engine.worker import Worker

__all__ = [
    "FAILURE_TYPES",
    "ExecutionResult",
    "Failure",
    "MultiAgentExecutor",
    "Worker",
    "WorkflowGraph",
    "check_inputs",
    "prepare",
]
