"""Service settings, read from the environment (``Settings.from_env``) or given directly."""

from __future__ import annotations

import os
from dataclasses import dataclass

from omium.llm.gateway_token import MIN_SECRET_BYTES
from omium.store import DEFAULT_URL, URL_ENV

MIB = 1024 * 1024
_TRUE = {"1", "true", "yes", "on"}


def _env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    return default if value is None or value == "" else value.strip().lower() in _TRUE


def _env_int(name: str, default: int, minimum: int = 0) -> int:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {value!r}") from None
    if number < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {number}")
    return number


def _env_float(name: str, default: float, minimum: float = 0.0) -> float:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"{name} must be a number of seconds, got {value!r}") from None
    if not number > minimum:  # also refuses nan
        raise ValueError(f"{name} must be > {minimum:g}, got {value}")
    return number


def _env_url(name: str) -> str | None:
    value = (os.environ.get(name) or "").strip().rstrip("/")
    if value and not value.startswith(("http://", "https://")):
        raise ValueError(f"{name} must be an http:// or https:// URL, got {value!r}")
    return value or None


def _env_secret(name: str) -> str | None:
    value = os.environ.get(name) or None
    if value is not None and len(value.encode()) < MIN_SECRET_BYTES:
        raise ValueError(f"{name} must be at least {MIN_SECRET_BYTES} bytes (e.g. "
                         "`python -c 'import secrets; print(secrets.token_hex(32))'`)")
    return value


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
    # (omium serve sets OMIUM_SERVE_WORKERS: --worker-concurrency, default 1,000)
    worker_concurrency: int = 0
    # OMIUM_AGENT_THREADS: threads for sync Python agents (started as needed), per process
    agent_threads: int = 1024
    # OMIUM_MAX_RECOVERIES: reclaims after a lost worker before an execution is failed as
    # poison (max_recoveries_exceeded); a workflow's own max_recoveries wins. Worker's default.
    max_recoveries: int = 3
    # OMIUM_METRICS_TOKEN: the Bearer token Prometheus sends for /metrics (an admin key works
    # too); without one, only admin keys may read metrics, which name tenants.
    metrics_token: str | None = None
    # Slow clients (omium serve): a request head must arrive within header_timeout_s and its
    # body within body_timeout_s, an idle keep-alive connection closes after keepalive_s, and
    # past max_connections per process new requests get 503.
    header_timeout_s: float = 10.0  # OMIUM_HEADER_TIMEOUT_S
    body_timeout_s: float = 60.0  # OMIUM_BODY_TIMEOUT_S
    keepalive_s: float = 5.0  # OMIUM_KEEPALIVE_S
    max_connections: int = 1000  # OMIUM_MAX_CONNECTIONS
    # The LLM gateway (/v1): OMIUM_GATEWAY_URL is the base URL agents in this process's
    # workers call (`omium serve` sets it to its own address); OMIUM_GATEWAY_SECRET signs
    # their execution tokens and must be the same in every API and worker process of a
    # deployment (`omium serve` makes one per start for its processes when none is set);
    # OMIUM_GATEWAY_TOKEN_TTL_S is how long a token stays valid.
    gateway_url: str | None = None
    gateway_secret: str | None = None
    gateway_token_ttl_s: float = 3600.0

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            database_url=os.environ.get(URL_ENV) or DEFAULT_URL,
            admin_key=os.environ.get("OMIUM_ADMIN_KEY") or None,
            max_body_bytes=int(os.environ.get("OMIUM_MAX_BODY_BYTES") or MIB),
            workers_expected=_env_bool("OMIUM_WORKERS_EXPECTED",
                                       int(os.environ.get("OMIUM_SERVE_WORKERS") or 0) > 0),
            worker_concurrency=int(os.environ.get("OMIUM_SERVE_WORKERS") or 0),
            max_recoveries=_env_int("OMIUM_MAX_RECOVERIES", 3),
            agent_threads=_env_int("OMIUM_AGENT_THREADS", 1024, minimum=1),
            metrics_token=os.environ.get("OMIUM_METRICS_TOKEN") or None,
            header_timeout_s=_env_float("OMIUM_HEADER_TIMEOUT_S", 10.0),
            body_timeout_s=_env_float("OMIUM_BODY_TIMEOUT_S", 60.0),
            keepalive_s=_env_float("OMIUM_KEEPALIVE_S", 5.0),
            max_connections=_env_int("OMIUM_MAX_CONNECTIONS", 1000, minimum=1),
            gateway_url=_env_url("OMIUM_GATEWAY_URL"),
            gateway_secret=_env_secret("OMIUM_GATEWAY_SECRET"),
            gateway_token_ttl_s=_env_float("OMIUM_GATEWAY_TOKEN_TTL_S", 3600.0),
        )
