"""Observability: JSON logs, OpenTelemetry traces and the request metrics middleware.

This package is imported by the gunicorn master (for its log formatter), so importing it must
stay cheap and side-effect free: the OpenTelemetry SDK and prometheus-client are imported by the
submodules that need them, in the workers.
"""

from __future__ import annotations

from service.settings import Settings


def setup_worker(settings: Settings) -> None:
    """Per-worker set-up after gunicorn's fork: JSON logging, then tracing when enabled.

    The batch span processor starts a thread, so the tracer provider is built here, in the
    worker, never in the master before the fork.
    """
    from service.observability.logs import configure_logging

    configure_logging(settings.log_level)
    if settings.tracing_enabled:
        from service.observability.tracing import configure_tracing

        configure_tracing()
