"""Coordination between agents: the handoff protocol and consensus over parallel results."""

from omium.coordination.consensus import ConsensusResult, decide
from omium.coordination.handoff import HandoffProtocol, HandoffResult

__all__ = ["ConsensusResult", "HandoffProtocol", "HandoffResult", "decide"]
