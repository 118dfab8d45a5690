"""Random hex ids (128 bits, as uuid4's hex) for usage records, charges, holds and executions.

The OS's random bytes are read a block at a time: one ``getrandom`` call per 256 ids, not per
id. ``uuid.uuid4().hex`` costs ~8 us (an object, a syscall that leaves the GIL, formatting)
and an LLM call through the gateway made three of them; a busy server's main thread spent ~5%
of its time in that syscall alone. A forked child starts with a block of its own, so no two
processes hand out the same ids.
"""

from __future__ import annotations

import os

_BLOCK = 16 * 256


class _RandomHex:
    def __init__(self) -> None:
        self._hex = ""
        self._at = 0
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._hex, self._at = "", 0

    def next(self, chars: int = 32) -> str:
        if self._at + chars > len(self._hex):
            self._hex, self._at = os.urandom(_BLOCK).hex(), 0
        self._at += chars
        return self._hex[self._at - chars:self._at]


_random = _RandomHex()


def random_hex(chars: int = 32) -> str:
    """``chars`` random hex digits (at most 8,192); 32 carry uuid4's 128 bits."""
    return _random.next(chars)
