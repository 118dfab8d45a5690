"""CrewAI crews as Omium agents (``framework: crewai``), each finished task checkpointed so a
resumed crew runs only the tasks that had not finished. CrewAI itself is imported only when a
workflow uses it (``pip install 'omium[crewai]'``), so this package loads without it."""

from __future__ import annotations

from omium.contrib.crewai.agent import CrewAIAgent

__all__ = ["CrewAIAgent"]
