"""Agent kinds by framework name, from the ``omium.agents`` entry-point group."""

from __future__ import annotations

from functools import cache
from importlib.metadata import entry_points

from omium.agents.base import Agent
from omium.agents.llm import LLMAgent
from omium.agents.python import PythonAgent

ENTRY_POINT_GROUP = "omium.agents"
_BUILTIN: dict[str, type[Agent]] = {"python": PythonAgent, "llm": LLMAgent}
_registered: dict[str, type[Agent]] = {}


def register_agent(name: str, cls: type[Agent]) -> None:
    """Register an agent kind in-process (packages use the entry-point group instead)."""
    _registered[name] = cls


@cache
def _from_entry_points() -> dict[str, type[Agent]]:
    found: dict[str, type[Agent]] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            cls = ep.load()
        except Exception:  # a broken third-party plugin must not break every workflow
            continue
        if isinstance(cls, type) and issubclass(cls, Agent):
            found[ep.name] = cls
    return found


def known_frameworks() -> list[str]:
    return sorted({*_BUILTIN, *_from_entry_points(), *_registered})


def agent_class(name: str) -> type[Agent] | None:
    return _registered.get(name) or _from_entry_points().get(name) or _BUILTIN.get(name)
