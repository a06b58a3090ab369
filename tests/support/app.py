"""The app in-process: its lifespan run, its first model loaded, an HTTP client on it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, cast

import httpx
from fastapi import FastAPI

from service.app import create_app
from service.dataplane import DataPlane
from service.models.source import ModelSource
from service.observability.middleware import RequestObservability
from service.settings import Settings


@dataclass(frozen=True)
class AppUnderTest:
    """An app whose lifespan runs, and a client that talks to it."""

    app: FastAPI
    client: httpx.AsyncClient

    @property
    def dataplane(self) -> DataPlane:
        """What the lifespan built."""
        return cast(DataPlane, self.app.state.dataplane)


@asynccontextmanager
async def app_under_test(
    settings: Settings,
    *,
    source: ModelSource | None = None,
    access_log: Callable[[bytes], Any] | None = None,
    load_timeout: float = 10.0,
) -> AsyncIterator[AppUnderTest]:
    """``create_app(settings, source=source)`` with its first load done; ``access_log``, when
    given, receives the access lines instead of stdout."""
    app = create_app(settings, source=source)
    if access_log is not None:
        for middleware in app.user_middleware:  # read when the first request builds the stack
            if middleware.cls is RequestObservability:
                middleware.kwargs["write"] = access_log
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        served = AppUnderTest(app, httpx.AsyncClient(transport=transport, base_url="http://test"))
        await asyncio.wait_for(served.dataplane.manager.loaded.wait(), load_timeout)
        async with served.client:
            yield served
