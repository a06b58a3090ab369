"""An in-memory span exporter behind the process's tracer provider (set once per session)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON

from service.app import create_app
from service.dataplane import DataPlane
from service.observability.tracing import DecidedTraceIds
from service.settings import Settings

_EXPORTER = InMemorySpanExporter()


@pytest.fixture(scope="session")
def _provider() -> TracerProvider:
    """The global provider can be set only once per process; every test here shares it."""
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        return current
    provider = TracerProvider(sampler=ALWAYS_ON, id_generator=DecidedTraceIds())
    provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))
    trace.set_tracer_provider(provider)
    return provider


@pytest.fixture
def exported(_provider: TracerProvider) -> Iterator[InMemorySpanExporter]:
    """The exporter, emptied before the test."""
    _EXPORTER.clear()
    yield _EXPORTER
    _EXPORTER.clear()


@pytest.fixture
def access_lines() -> list[bytes]:
    """Where the app under test writes its access log."""
    return []


@pytest.fixture
async def traced_client(
    iris_path: Path, exported: InMemorySpanExporter, access_lines: list[bytes]
) -> AsyncIterator[httpx.AsyncClient]:
    """The app in-process (no Redis: the in-process cache, no L1), tracing every request."""
    settings = Settings(model_uri=str(iris_path), model_version="1")
    app = create_app(settings)
    _capture_access_log(app, access_lines)
    async with app.router.lifespan_context(app):
        dataplane: DataPlane = app.state.dataplane
        await dataplane.manager.loaded.wait()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            client.dataplane = dataplane  # type: ignore[attr-defined]
            yield client


def _capture_access_log(app: object, lines: list[bytes]) -> None:
    from starlette.applications import Starlette

    from service.observability.middleware import RequestObservability

    assert isinstance(app, Starlette)
    for middleware in app.user_middleware:
        if middleware.cls is RequestObservability:
            middleware.kwargs["write"] = lines.append
