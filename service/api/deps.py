"""Typed dependencies the routes take."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from service.dataplane import DataPlane
from service.settings import Settings


async def get_dataplane(request: Request) -> DataPlane:
    """The DataPlane the lifespan built (async: a sync dependency costs a thread hop per call)."""
    dataplane: DataPlane = request.app.state.dataplane
    return dataplane


async def get_settings(request: Request) -> Settings:
    """The settings the app was created with."""
    settings: Settings = request.app.state.settings
    return settings


DataPlaneDep = Annotated[DataPlane, Depends(get_dataplane)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
