"""Names an allowed module merely imports: a client must not reach them through it.

(tests/test_api_refs.py names ``tests.reexports_for_tests:system`` and the like; only
``own`` and ``Own`` are written here.)"""

from __future__ import annotations

import os  # noqa: F401  (a module: tests.reexports_for_tests:os)
from functools import partial
from os import system  # noqa: F401  (a stdlib function: tests.reexports_for_tests:system)
from statistics import mean  # noqa: F401  (a pure-Python stdlib function, re-exported)
from typing import Any

shout = partial(print, "!")  # a functools.partial, not a function
length = len  # a builtin


def own(inputs: Any) -> dict[str, Any]:
    return {"own": inputs}


class Own:
    def __init__(self, inputs: Any) -> None:
        self.inputs = inputs

    def method(self, inputs: Any) -> Any:
        return inputs


instance = Own(None)
bound = instance.method  # a bound method


def _private(inputs: Any) -> None:
    raise AssertionError("never called")


async def own_async(inputs: Any) -> dict[str, Any]:
    return {"own": inputs}
