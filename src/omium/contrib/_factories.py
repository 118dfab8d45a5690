"""What the framework adapters share: whether their framework is installed, and calling a
user's factory (with or without the agent's context, sync or async)."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Sequence
from typing import Any

from omium.agents.base import AgentContext


def missing_extra(framework: str, modules: Sequence[str], install: str) -> str | None:
    """Why ``framework`` cannot be used here (a module of it is not installed), or None."""
    try:
        for module in modules:
            importlib.import_module(module)
    except ImportError as err:
        return f"{framework} is not installed (no module {err.name!r}); run: {install}"
    return None


def takes_argument(fn: Any) -> bool:
    """Whether a factory takes the context (one that takes nothing is called without it)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return True
    return any(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
               for p in params)


async def call_factory(fn: Any, with_ctx: bool, ctx: AgentContext) -> Any:
    made = fn(ctx) if with_ctx else fn()
    return await made if inspect.isawaitable(made) else made
