"""The FastAPI application: ``create_app(settings)``; ``uvicorn --factory omium.api:create_app``.

The lifespan opens one store per process (kept on ``app.state.store``) and closes it at
shutdown. ``app.state.on_startup_extra`` is a list of ``async def hook(app)`` run after the
store is open (e.g. to start in-process workers); each may return an async ``stop()`` that is
awaited at shutdown, in reverse order.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI

from omium.api import dashboard, errors
from omium.api.auth import Authenticator
from omium.api.gateway import GatewayDispatch, build_gateway, close_gateway, signer_for
from omium.api.jsonbody import StrictJSONMiddleware
from omium.api.limits import BodyLimitMiddleware
from omium.api.routes import (
    actions,
    events,
    execution_lists,
    executions,
    health,
    tenants,
    workflows,
)
from omium.api.settings import Settings
from omium.api.slowclients import BodyTimeoutMiddleware
from omium.api.workflow_cache import WorkflowCache
from omium.store import open_store

Stop = Callable[[], Awaitable[None]]
StartupHook = Callable[[FastAPI], Awaitable[Stop | None]]
API_PREFIX = "/api/v1"


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    store = open_store(settings.database_url)
    await store.connect()
    app.state.store = store
    stops: list[Stop] = []
    try:
        for hook in list(app.state.on_startup_extra):
            stop = await hook(app)
            if stop is not None:
                stops.append(stop)
        yield
    finally:
        try:
            for stop in reversed(stops):
                await stop()
        finally:
            await store.close()


async def start_workers(app: FastAPI) -> Stop:
    """In-process workers: claim and run executions beside the API in this process."""
    import asyncio

    from omium.engine.endpoints import service_endpoints
    from omium.engine.worker import Worker

    settings: Settings = app.state.settings
    stop = asyncio.Event()
    # Agents call this serve's gateway (the URL `omium serve` sets); without one (an app
    # built by hand) the worker serves its own on loopback, as a CLI run does.
    endpoints = None if settings.gateway_url is None else service_endpoints(
        settings.gateway_url, app.state.gateway_signer, settings.gateway_token_ttl_s)
    worker = Worker(app.state.store, concurrency=settings.worker_concurrency,
                    max_recoveries=settings.max_recoveries, endpoints=endpoints)
    task = asyncio.ensure_future(worker.run(stop))

    async def shutdown() -> None:  # graceful: finish or release current work
        stop.set()
        await task

    return shutdown


async def declare_llm_models(app: FastAPI) -> None:
    """Zero the per-model LLM series for the configured models, so they are on the first
    scrape (a broken LLM config is reported where llm agents run, not here)."""
    from omium import metrics
    from omium.errors import LLMConfigError
    from omium.llm.config import load_config

    try:
        config = load_config()
    except LLMConfigError:
        return None
    metrics.declare_models(b.model for b in config.backends)
    return None


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings.from_env()
    app = FastAPI(title="Omium", version="1", lifespan=lifespan,
                  summary="Durable multi-agent workflows: submit, watch, review.")
    app.state.settings = settings
    app.state.auth = Authenticator(settings.admin_key, ttl_s=settings.auth_cache_s)
    app.state.plans = WorkflowCache()
    app.state.gateway_signer = signer_for(settings.gateway_secret)
    app.state.gateway = build_gateway(app)
    # Stopped after the workers (hooks stop in reverse order): their agents may still call.
    app.state.on_startup_extra = [declare_llm_models, close_gateway, *(
        [start_workers] if settings.worker_concurrency > 0 else [])]
    errors.install(app)
    app.add_middleware(StrictJSONMiddleware)  # innermost: sees bodies already size-capped
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=settings.max_body_bytes)
    # The LLM gateway (/v1/...) answers in OpenAI's shapes with its own body limit: in front
    # of the two above, behind the slow-body deadline.
    app.add_middleware(GatewayDispatch, gateway=app.state.gateway)
    app.add_middleware(BodyTimeoutMiddleware, timeout_s=settings.body_timeout_s)
    for module in (workflows, executions, execution_lists, actions, events, tenants):
        app.include_router(module.router, prefix=API_PREFIX, responses=errors.API_ERRORS)
    app.include_router(health.router)
    dashboard.install(app)  # the web pages at / (their own routes; not in the API's schema)
    errors.document_errors(app)
    return app
