"""Omium: durable multi-agent workflows that survive crashes and agree before they act."""

from omium.agents import Ack, Agent, AgentContext, PythonAgent, register_agent
from omium.coordination import ConsensusResult, HandoffProtocol, HandoffResult
from omium.engine import ExecutionResult, MultiAgentExecutor, prepare
from omium.errors import (
    AgentError,
    ExecutionNotFoundError,
    ExecutionStateError,
    FieldProblem,
    HandoffValidationError,
    InputValidationError,
    LLMError,
    OmiumError,
    OutputValidationError,
    WorkflowValidationError,
)
from omium.store import Store, open_store
from omium.workflow import AgentSpec, ConsensusSpec, RetryPolicy, WorkflowDef, load_workflow

__version__ = "0.1.0"

__all__ = [
    "Ack",
    "Agent",
    "AgentContext",
    "AgentError",
    "AgentSpec",
    "ConsensusResult",
    "ConsensusSpec",
    "ExecutionNotFoundError",
    "ExecutionResult",
    "ExecutionStateError",
    "FieldProblem",
    "HandoffProtocol",
    "HandoffResult",
    "HandoffValidationError",
    "InputValidationError",
    "LLMError",
    "MultiAgentExecutor",
    "OmiumError",
    "OutputValidationError",
    "PythonAgent",
    "RetryPolicy",
    "Store",
    "WorkflowDef",
    "WorkflowValidationError",
    "load_workflow",
    "open_store",
    "prepare",
    "register_agent",
]
