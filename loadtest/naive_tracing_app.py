"""memoserve traced the naive way, for comparison: FastAPIInstrumentor's defaults (send/receive
sub-spans, probes traced) instead of ours. Run it with ``OTEL_TRACES_SAMPLER=always_on``."""

from __future__ import annotations

from fastapi import FastAPI
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

from service.app import create_app as create_memoserve
from service.settings import Settings


def create_app() -> FastAPI:
    """memoserve without its own instrumentation, then instrumented with the defaults."""
    app = create_memoserve(Settings(tracing_enabled=False))
    FastAPIInstrumentor.instrument_app(app)
    return app
