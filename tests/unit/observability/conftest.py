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

from service.observability.tracing import DecidedTraceIds
from service.settings import Settings
from tests.support.app import AppUnderTest, app_under_test

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
async def traced(
    iris_path: Path, exported: InMemorySpanExporter, access_lines: list[bytes]
) -> AsyncIterator[AppUnderTest]:
    """The app in-process (no Redis: the in-process cache, no L1), tracing every request."""
    settings = Settings(model_uri=str(iris_path), model_version="1")
    async with app_under_test(settings, access_log=access_lines.append) as served:
        yield served


@pytest.fixture
def traced_client(traced: AppUnderTest) -> httpx.AsyncClient:
    """The client of ``traced``."""
    return traced.client
