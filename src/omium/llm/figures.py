"""The plan's success figures over a window of usage: the share served locally, how often a
fallback saved a call, and the cost saved against the reference model. One function for
``omium llm status`` and the dashboard's LLM page."""

from __future__ import annotations

from typing import Any

from omium.billing.money import nano_to_dollars
from omium.llm.pricing import PriceTable
from omium.store.records import UsageSummary


def plan_figures(rows: list[UsageSummary], all_failed: int,
                 prices: PriceTable) -> dict[str, Any]:
    """The plan's success figures from usage rows (one per tenant, day and model)."""
    calls = sum(r.calls for r in rows)
    local = sum(r.calls for r in rows if r.model_type == "local")
    fallbacks = sum(r.fallbacks for r in rows)
    actual = nano_to_dollars(sum(r.cost_nano for r in rows))
    ref = prices.reference
    reference = sum(ref.cost(r.prompt_tokens, r.completion_tokens) for r in rows)
    return {
        "calls": calls,
        "local_share": (local / calls) if calls else None,
        "fallback_success_rate": (fallbacks / (fallbacks + all_failed))
        if fallbacks + all_failed else None,
        "all_backends_failed": all_failed,
        "cost_usd": str(actual),
        "reference_cost_usd": str(reference),
        "reference_model": prices.reference_model,
        "cost_saved": float(1 - actual / reference) if reference else None,
    }
