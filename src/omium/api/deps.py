"""Request-scoped access to what the lifespan opened."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from omium.api.settings import Settings
from omium.api.workflow_cache import WorkflowCache
from omium.store.base import Store


def get_store(request: Request) -> Store:
    return request.app.state.store


def get_plans(request: Request) -> WorkflowCache:
    return request.app.state.plans


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


StoreDep = Annotated[Store, Depends(get_store)]
PlansDep = Annotated[WorkflowCache, Depends(get_plans)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
