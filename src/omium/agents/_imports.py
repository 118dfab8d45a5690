"""Resolving "package.module:name" references, under one set of rules for every agent kind.

A reference names code the server will call, so it is the road to code execution: a name is
never a path through other objects (``agents:statistics.random._os.system``). Two policies:

* the operator's own definitions (CLI, workflow files; ``allowed=None``): ``module:attr``,
  where a dotted attr may walk a class's attributes but never into a module, and never through
  a name starting with ``_`` (``__globals__``, ``__loader__``, ``_os``);
* a client's (over the API; ``allowed`` = the allowed packages): ``module:name``, a public
  top-level name; the module inside an allowed package, no segment private. Checked before
  anything is imported, and after: the object must be a function or class defined in that very
  module, so a name an allowed module merely imports (``from os import system``) is refused.
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
import sys
import threading
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

ALLOWED_ENV = "OMIUM_ALLOWED_MODULES"
DEFAULT_ALLOWED = ("examples",)
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")  # ASCII only: no look-alike letters

_lock = threading.Lock()


class RefusedReference(ValueError):
    """A reference the rules refuse (as opposed to one that merely does not resolve: no such
    module or name), so a client's is refused before ``prepare`` imports anything."""


def declared_refs(definition: dict[str, Any], key: str) -> list[tuple[str, Any]]:
    """(path, reference) of a reference field: one reference, or a list of them."""
    if key not in definition:
        return []
    value = definition[key]
    if isinstance(value, list):
        return [(f"definition.{key}[{j}]", v) for j, v in enumerate(value)]
    return [(f"definition.{key}", value)]


def allowed_modules() -> tuple[str, ...]:
    """Packages whose functions API clients may name as agents (comma-separated in
    $OMIUM_ALLOWED_MODULES; default: the bundled examples). Anything else (``os:system``)
    would let a tenant run arbitrary code on the server."""
    raw = os.environ.get(ALLOWED_ENV)
    if raw is None:
        return DEFAULT_ALLOWED
    return tuple(m.strip().rstrip(".") for m in raw.split(",") if m.strip())


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


def _inside(module_name: str, allowed: tuple[str, ...]) -> bool:
    return any(module_name == m or module_name.startswith(m + ".") for m in allowed)


def check_ref(ref: Any, allowed: tuple[str, ...] | None = None) -> tuple[str, list[str]]:
    """The module and attribute path of ``ref``: ValueError if it is not ``module:name`` at
    all, RefusedReference if the rules refuse it. Only looks at the text: this runs before
    anything is imported."""
    if not isinstance(ref, str) or ref.count(":") != 1:
        raise ValueError(f"expected 'module:function', got {ref!r}")
    module_name, attr = ref.split(":")
    if not module_name or not attr:
        raise ValueError(f"expected 'module:function', got {ref!r}")
    segments, names = module_name.split("."), attr.split(".")
    for seg in segments:
        if not _IDENTIFIER.match(seg):
            raise RefusedReference(f"module {module_name!r}: {seg!r} is not a Python "
                                   "identifier")
    for name in names:
        if not _IDENTIFIER.match(name):
            raise RefusedReference(f"{attr!r}: {name!r} is not a Python identifier")
    if allowed is None:
        if dunder := next((s for s in segments if s.startswith("__")), None):
            raise RefusedReference(f"module {module_name!r}: {dunder!r} (a dunder name) is "
                                   "never accepted")
        if private := next((n for n in names if n.startswith("_")), None):
            raise RefusedReference(f"{attr!r}: {private!r} starts with '_'; private and "
                                   "dunder names are never followed")
        return module_name, names
    if len(names) > 1:
        raise RefusedReference(f"{attr!r}: over the API a reference is 'module:name', a "
                               "top-level name of the module, without dots")
    if attr.startswith("_"):
        raise RefusedReference(f"{attr!r} starts with '_': private and dunder names are not "
                               "accepted over the API")
    if private := next((s for s in segments if s.startswith("_")), None):
        raise RefusedReference(f"module {module_name!r}: {private!r} starts with '_': "
                               "private modules are not accepted over the API")
    if not _inside(module_name, allowed):
        raise RefusedReference(f"module {module_name!r} is not allowed over the API (allowed: "
                               f"{', '.join(allowed) or 'none'}; set {ALLOWED_ENV})")
    return module_name, names


def _import(module_name: str, base_dir: str | None) -> Any:
    _ensure_on_path(module_name, base_dir)
    try:
        return importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(f"cannot import module {module_name!r}: {err}") from None
    except Exception as err:  # the module itself raised while importing
        raise ValueError(f"importing {module_name!r} failed: {type(err).__name__}: {err}") from None


def _attribute(obj: Any, name: str, module_name: str, attr: str) -> Any:
    try:
        return getattr(obj, name)
    except AttributeError:
        raise ValueError(f"module {module_name!r} has no attribute {attr!r}") from None


def _walk(module: Any, module_name: str, names: list[str]) -> Any:
    """The operator's dotted attr: through classes (``Scorer.score``), never into a module
    that this one happens to import (``agents:os.system``)."""
    obj = module
    for name in names:
        obj = _attribute(obj, name, module_name, ".".join(names))
        if inspect.ismodule(obj):
            raise RefusedReference(f"{module_name}:{'.'.join(names)} passes through module "
                                   f"{obj.__name__!r}; name the function in its own module")
    return obj


def _defined_here(module: Any, module_name: str, name: str) -> Any:
    """A client's name: a function (sync or async) or a class written in that very module."""
    ref = f"{module_name}:{name}"
    obj = _attribute(module, name, module_name, name)
    if not (inspect.isfunction(obj) or inspect.isclass(obj)):
        raise RefusedReference(f"{ref!r} is a {type(obj).__name__} object, not a function "
                               "or class defined in that module")
    owner = getattr(obj, "__module__", None)
    if owner != module_name:
        raise RefusedReference(f"{ref!r} is defined in module {owner!r}, not in "
                               f"{module_name!r}: over the API a name must be defined in the "
                               "module that names it")
    return obj


def _object(ref: str, base_dir: str | None, allowed: tuple[str, ...] | None) -> Any:
    module_name, names = check_ref(ref, allowed)
    module = _import(module_name, base_dir)
    if allowed is None:
        return _walk(module, module_name, names)
    return _defined_here(module, module_name, names[0])


@lru_cache(maxsize=4096)
def _resolve(ref: str, base_dir: str | None, allowed: tuple[str, ...] | None
             ) -> Callable[..., Any]:
    obj = _object(ref, base_dir, allowed)
    if not callable(obj):
        raise ValueError(f"{ref!r} is not callable")
    return obj  # type: ignore[no-any-return]


def resolve_ref(ref: Any, base_dir: str | None = None, *,
                allowed: tuple[str, ...] | None = None) -> Callable[..., Any]:
    """Check ``ref`` under the operator's rules (``allowed=None``) or a client's (the allowed
    packages), import it and return the callable; ValueError with a readable reason.

    Cached: every execution re-prepares its workflow, and Python caches modules anyway."""
    if not isinstance(ref, str):  # the cache needs a hashable key; say what is wrong instead
        raise ValueError(f"expected 'module:function', got {ref!r}")
    return _resolve(ref, base_dir, allowed)


def import_ref(ref: Any, base_dir: str | None = None) -> Callable[..., Any]:
    """Import ``module:attr`` under the operator's rules (see the module docstring)."""
    return resolve_ref(ref, base_dir)


def import_object(ref: Any, base_dir: str | None = None) -> Any:
    """Import ``module:attr`` under the operator's rules whatever it is, callable or not
    (an adapter's compiled graph). A client's references stay functions and classes only:
    ``resolve_ref`` with ``allowed``."""
    if not isinstance(ref, str):
        raise ValueError(f"expected 'module:attr', got {ref!r}")
    return _object(ref, base_dir, None)
