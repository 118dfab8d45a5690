"""How many positional arguments a user's callable takes (an agent function: the input and the
context, or the input alone; a factory: the context, or nothing), read once per callable.
Agents are built anew for every execution, and ``inspect.signature`` was a tenth of a no-op
execution's cost."""

from __future__ import annotations

import inspect
from functools import lru_cache
from typing import Any

_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


def positional(fn: Any) -> tuple[int, bool] | None:
    """(positional parameters, whether it takes ``*args``), or None when Python cannot tell
    (a builtin without a signature)."""
    try:
        return _cached(fn)
    except TypeError:  # an unhashable callable: read it every time
        return _read(fn)


@lru_cache(maxsize=1024)
def _cached(fn: Any) -> tuple[int, bool] | None:
    return _read(fn)


def _read(fn: Any) -> tuple[int, bool] | None:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return None
    return (sum(1 for p in params if p.kind in _POSITIONAL),
            any(p.kind == inspect.Parameter.VAR_POSITIONAL for p in params))
