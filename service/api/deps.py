"""Typed dependencies the routes take: the parts the lifespan built, from ``app.state``."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from service.dataplane import DataPlane
from service.promotion.coordinator import PromotionCoordinator
from service.settings import Settings


async def get_dataplane(request: Request) -> DataPlane:
    """The DataPlane (async: a sync dependency costs a thread hop per call)."""
    dataplane: DataPlane = request.app.state.dataplane
    return dataplane


async def get_settings(request: Request) -> Settings:
    """The settings the app was created with."""
    settings: Settings = request.app.state.settings
    return settings


async def get_promotion(request: Request) -> PromotionCoordinator:
    """The worker's PromotionCoordinator."""
    promotion: PromotionCoordinator = request.app.state.promotion
    return promotion


DataPlaneDep = Annotated[DataPlane, Depends(get_dataplane)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
PromotionDep = Annotated[PromotionCoordinator, Depends(get_promotion)]
