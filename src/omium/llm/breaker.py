"""A circuit breaker per backend: closed -> open after N consecutive failures -> after the
cooldown exactly one probe (half-open) -> closed on success, open again on failure.

The clock is injectable so tests move time instead of sleeping.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

State = Literal["closed", "open", "half_open"]
STATE_VALUE = {"closed": 0, "half_open": 1, "open": 2}


class CircuitBreaker:
    def __init__(self, failure_threshold: int = 3, cooldown_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.failure_threshold = failure_threshold
        self.cooldown_s = cooldown_s
        self.clock = clock
        self.state: State = "closed"
        self.consecutive_failures = 0
        self.opened_at: float | None = None
        self._probe_out = False

    def allow(self) -> bool:
        """May a request go to this backend now? In half-open, only the one probe may."""
        if self.state == "closed":
            return True
        if self.state == "open":
            assert self.opened_at is not None
            if self.clock() - self.opened_at < self.cooldown_s:
                return False
            self.state = "half_open"
            self._probe_out = False
        if self._probe_out:
            return False
        self._probe_out = True
        return True

    def record_success(self) -> None:
        self.state, self.consecutive_failures = "closed", 0
        self.opened_at, self._probe_out = None, False

    def record_failure(self) -> None:
        self.consecutive_failures += 1
        if self.state == "half_open" or self.consecutive_failures >= self.failure_threshold:
            self.state, self.opened_at, self._probe_out = "open", self.clock(), False

    def release(self) -> None:
        """A let-through request ended with no verdict on the backend (e.g. cancelled)."""
        if self.state == "half_open":
            self._probe_out = False

    @property
    def retry_in_s(self) -> float:
        if self.state != "open" or self.opened_at is None:
            return 0.0
        return max(0.0, self.cooldown_s - (self.clock() - self.opened_at))
