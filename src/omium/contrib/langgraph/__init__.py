"""LangGraph graphs as Omium agents (``framework: langgraph``), checkpointed inside the graph
by ``OmiumSaver`` over Omium's store. LangGraph itself is imported only when a workflow uses
it (``pip install 'omium[langgraph]'``), so this package loads without it."""

from __future__ import annotations

from typing import Any

from omium.contrib.langgraph.agent import LangGraphAgent

__all__ = ["LangGraphAgent", "OmiumSaver"]


def __getattr__(name: str) -> Any:
    if name == "OmiumSaver":  # imports LangGraph
        from omium.contrib.langgraph.saver import OmiumSaver

        return OmiumSaver
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
