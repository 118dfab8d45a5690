"""Agent kinds behind one interface."""

from omium.agents.base import Ack, Agent, AgentContext
from omium.agents.python import PythonAgent
from omium.agents.registry import agent_class, known_frameworks, register_agent

__all__ = [
    "Ack",
    "Agent",
    "AgentContext",
    "PythonAgent",
    "agent_class",
    "known_frameworks",
    "register_agent",
]
