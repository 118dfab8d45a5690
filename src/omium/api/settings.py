"""Service settings, read from the environment (``Settings.from_env``) or given directly."""

from __future__ import annotations

import os
from dataclasses import dataclass

from omium.store import DEFAULT_URL, URL_ENV

MIB = 1024 * 1024
_TRUE = {"1", "true", "yes", "on"}


def _env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    return default if value is None or value == "" else value.strip().lower() in _TRUE


@dataclass(frozen=True)
class Settings:
    database_url: str = DEFAULT_URL
    admin_key: str | None = None  # OMIUM_ADMIN_KEY: manages tenants; never stored
    max_body_bytes: int = MIB  # larger request bodies get 413
    workers_expected: bool = False  # readiness then also needs a live worker
    auth_cache_s: float = 30.0  # a revoked key keeps working this long in each process
    sse_poll_s: float = 0.25  # how often an event stream re-reads its execution
    sse_max_s: float = 600.0  # an event stream closes after this long
    worker_alive_s: float = 30.0  # a worker counts as alive within this many seconds
    # In-process workers (omium serve without --no-workers): executions run at once, 0 = none
    worker_concurrency: int = 0

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            database_url=os.environ.get(URL_ENV) or DEFAULT_URL,
            admin_key=os.environ.get("OMIUM_ADMIN_KEY") or None,
            max_body_bytes=int(os.environ.get("OMIUM_MAX_BODY_BYTES") or MIB),
            workers_expected=_env_bool("OMIUM_WORKERS_EXPECTED",
                                       int(os.environ.get("OMIUM_SERVE_WORKERS") or 0) > 0),
            worker_concurrency=int(os.environ.get("OMIUM_SERVE_WORKERS") or 0),
        )
