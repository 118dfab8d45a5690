"""Resolving "package.module:attribute" references, relative to a workflow's folder too."""

from __future__ import annotations

import importlib
import os
import sys
import threading
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

_lock = threading.Lock()


def _roots(module_name: str, base_dir: str | None) -> list[str]:
    """Folders to import from: the workflow file's folder, the nearest ancestor of it that
    holds the module's top package (``examples.loan.agents`` from inside ``examples/loan``),
    and the working directory (a console script does not put it on sys.path)."""
    top = module_name.split(".")[0]
    roots = []
    if base_dir:
        roots.append(base_dir)
        for folder in [Path(base_dir), *Path(base_dir).parents]:
            if (folder / top).is_dir() or (folder / f"{top}.py").is_file():
                roots.append(str(folder))
                break
    roots.append(os.getcwd())
    return roots


def _ensure_on_path(module_name: str, base_dir: str | None) -> None:
    with _lock:
        for d in _roots(module_name, base_dir):
            if d not in sys.path:
                sys.path.append(d)


@lru_cache(maxsize=4096)
def import_ref(ref: str, base_dir: str | None = None) -> Callable[..., Any]:
    """Import ``module:attr`` (dots allowed in attr). Raises ValueError with a readable reason.

    Cached: every execution re-prepares its workflow, and Python caches modules anyway.
    """
    if not isinstance(ref, str) or ref.count(":") != 1:
        raise ValueError(f"expected 'module:function', got {ref!r}")
    module_name, attr = ref.split(":")
    if not module_name or not attr:
        raise ValueError(f"expected 'module:function', got {ref!r}")
    _ensure_on_path(module_name, base_dir)
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(f"cannot import module {module_name!r}: {err}") from None
    except Exception as err:  # the module itself raised while importing
        raise ValueError(f"importing {module_name!r} failed: {type(err).__name__}: {err}") from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ValueError(f"module {module_name!r} has no attribute {attr!r}") from None
    if not callable(obj):
        raise ValueError(f"{ref!r} is not callable")
    return obj
