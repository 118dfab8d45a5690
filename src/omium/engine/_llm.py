"""The LLM router an engine process builds for its llm agents (the executor's, a worker's)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from omium.billing.ledger import Ledger
from omium.engine.graph import WorkflowGraph
from omium.store.base import BillingStore

if TYPE_CHECKING:
    from omium.llm.router import LLMRouter


def router_for(plan: WorkflowGraph, store: BillingStore) -> LLMRouter | None:
    """A router from the LLM config, billing ``store``; None if ``plan`` has no llm agent."""
    if "llm" not in plan.frameworks:
        return None
    # Imported here: aiohttp costs ~90 ms of start-up that python-only runs skip.
    from omium.llm.config import load_config
    from omium.llm.router import LLMRouter

    return LLMRouter(load_config(), ledger=Ledger(store))
