"""AutoGen AgentChat teams and agents as Omium agents (``framework: autogen``), their state
checkpointed after every message so a resumed agent continues its conversation. AutoGen itself
is imported only when a workflow uses it (``pip install 'omium[autogen]'``), so this package
loads without it."""

from __future__ import annotations

from omium.contrib.autogen.agent import AutoGenAgent

__all__ = ["AutoGenAgent"]
