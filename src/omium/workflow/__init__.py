"""Workflow definitions: the model, file loading and structural validation."""

from omium.workflow.loader import load_workflow, parse_workflow
from omium.workflow.model import AgentSpec, ConsensusSpec, RetryPolicy, WorkflowDef

__all__ = [
    "AgentSpec",
    "ConsensusSpec",
    "RetryPolicy",
    "WorkflowDef",
    "load_workflow",
    "parse_workflow",
]
