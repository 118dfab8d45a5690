"""Request-scoped access to what the lifespan opened.

``async def`` on purpose: FastAPI runs a plain ``def`` dependency in a worker thread, two
thread hops per request for nothing (measured under bench.e2e)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from omium.api.settings import Settings
from omium.api.workflow_cache import WorkflowCache
from omium.store.base import Store


async def get_store(request: Request) -> Store:
    return request.app.state.store


async def get_plans(request: Request) -> WorkflowCache:
    return request.app.state.plans


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


StoreDep = Annotated[Store, Depends(get_store)]
PlansDep = Annotated[WorkflowCache, Depends(get_plans)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
