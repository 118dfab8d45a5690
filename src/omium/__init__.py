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

# Heavier layers load on first use, so `import omium` (and every CLI call) stays fast.
_LAZY = {
    "LLMRouter": "omium.llm.router",
    "LLMConfig": "omium.llm.config",
    "BackendConfig": "omium.llm.config",
    "load_llm_config": ("omium.llm.config", "load_config"),
    "Ledger": "omium.billing.ledger",
    "Worker": "omium.engine.worker",
    "create_app": "omium.api.app",
}


def __getattr__(name: str) -> object:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'omium' has no attribute {name!r}")
    module_name, attr = target if isinstance(target, tuple) else (target, name)
    import importlib

    return getattr(importlib.import_module(module_name), attr)

__all__ = [  # noqa: RUF022 -- the lazy names last
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
    "BackendConfig",
    "LLMConfig",
    "LLMRouter",
    "Ledger",
    "Worker",
    "create_app",
    "load_llm_config",
]
