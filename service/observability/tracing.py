"""OpenTelemetry tracing: one tracer provider per gunicorn worker, configured from ``OTEL_*``.

Defaults, chosen so that tracing costs the cache-hit path little when nobody looks:

- ``OTEL_TRACES_EXPORTER`` unset: ``otlp`` when an OTLP endpoint variable is set, else ``none``.
  ``otlp`` speaks ``http/protobuf`` unless ``OTEL_EXPORTER_OTLP[_TRACES]_PROTOCOL=grpc``;
  ``console`` prints spans; several exporters may be listed, comma-separated.
- ``OTEL_TRACES_SAMPLER`` unset: ``parentbased_traceidratio`` with ``OTEL_TRACES_SAMPLER_ARG``
  or :data:`DEFAULT_SAMPLE_RATIO`; with no exporter at all nothing is recorded (``always_off``),
  but every request still gets trace and span ids for its log lines.
- The health, readiness and metrics routes are not traced (``OTEL_PYTHON_FASTAPI_EXCLUDED_URLS``
  overrides), and the ASGI ``send``/``receive`` sub-spans are dropped.

Server spans come from ``FastAPIInstrumentor``. Its middleware costs about as much as the rest
of a cache hit *before* the sampler is asked, so :class:`HeadSampling` takes the sampling
decision first and sends only sampled requests through it; the others get a non-recording span
context (ids for the logs, the caller's trace id kept). The SDK then takes the same decision on
the same trace id (:class:`DecidedTraceIds` hands it over), so ratios hold: the standard
samplers decide on the parent and the trace id alone.
"""

from __future__ import annotations

import logging
import os
import random
import socket
from contextvars import ContextVar
from importlib import metadata
from typing import Any, cast

from fastapi import FastAPI
from opentelemetry import context, propagate, trace
from opentelemetry.instrumentation.asgi import asgi_getter
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.sdk.resources import (
    SERVICE_INSTANCE_ID,
    SERVICE_NAME,
    SERVICE_VERSION,
    OTELResourceDetector,
    Resource,
)
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    Decision,
    ParentBased,
    Sampler,
    TraceIdRatioBased,
)
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    TraceFlags,
)
from starlette.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger(__name__)

DEFAULT_SAMPLE_RATIO = 0.01
"""Share of requests traced by default (root spans; a sampled caller's decision is kept).
A sampled request costs several times a cache hit (loadtest/bench_tracing.py: at 5% a worker
serving hits loses ~15% of its throughput, at 1% ~10%, near the noise); to trace one request,
send a sampled ``traceparent``."""

DEFAULT_EXCLUDED_URLS = "/healthz$,/readyz$,/metrics$"

_DECIDED_TRACE_ID: ContextVar[int] = ContextVar("memoserve_decided_trace_id", default=0)
_NOT_SAMPLED = TraceFlags(TraceFlags.DEFAULT)


class DecidedTraceIds(RandomIdGenerator):
    """Gives the server span the trace id :class:`HeadSampling` decided on."""

    def generate_trace_id(self) -> int:
        return _DECIDED_TRACE_ID.get() or super().generate_trace_id()


class HeadSampling:
    """Pure ASGI: ask the sampler first; only sampled requests reach the instrumented stack.

    ``app`` is the instrumented stack (the attribute name lets FastAPI see that the app is
    instrumented); ``untraced`` is the same app without the OpenTelemetry middleware.
    """

    def __init__(self, app: ASGIApp, untraced: ASGIApp, sampler: Sampler) -> None:
        self.app = app
        self.untraced = untraced
        self.sampler = sampler
        self._fields = {f.lower().encode("latin-1") for f in propagate.get_global_textmap().fields}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.untraced(scope, receive, send)
            return
        parent = None
        fields = self._fields
        for name, _ in scope["headers"]:
            if name in fields:
                parent = propagate.extract(cast(dict[str, Any], scope), getter=asgi_getter)
                break
        parent_context = trace.get_current_span(parent).get_span_context()
        remote = parent_context.is_valid
        trace_id = parent_context.trace_id if remote else random.getrandbits(128) or 1
        decision = self.sampler.should_sample(parent, trace_id, "HTTP", SpanKind.SERVER).decision
        if decision is not Decision.DROP:
            token = _DECIDED_TRACE_ID.set(trace_id)
            try:
                await self.app(scope, receive, send)
            finally:
                _DECIDED_TRACE_ID.reset(token)
            return
        span_context = SpanContext(
            trace_id,
            random.getrandbits(64) or 1,
            is_remote=False,
            trace_flags=_NOT_SAMPLED,
            trace_state=parent_context.trace_state if remote else None,
        )
        attached = context.attach(trace.set_span_in_context(NonRecordingSpan(span_context), parent))
        try:
            await self.untraced(scope, receive, send)
        finally:
            context.detach(attached)


def instrument_app(app: FastAPI) -> None:
    """Server spans for sampled requests: route-named, no ASGI send/receive sub-spans.

    The middleware stack is built on the first request or lifespan, in the worker; by then
    ``setup_worker`` has installed the tracer provider whose sampler the gate uses.
    """
    excluded = (
        os.environ.get("OTEL_PYTHON_FASTAPI_EXCLUDED_URLS")
        or os.environ.get("OTEL_PYTHON_EXCLUDED_URLS")
        or DEFAULT_EXCLUDED_URLS
    )
    FastAPIInstrumentor.instrument_app(
        app, excluded_urls=excluded, exclude_spans=["receive", "send"]
    )
    build_traced = app.build_middleware_stack

    def build_middleware_stack() -> ASGIApp:
        untraced = type(app).build_middleware_stack(app)
        provider = trace.get_tracer_provider()
        if isinstance(provider, TracerProvider):
            return HeadSampling(build_traced(), untraced, provider.sampler)
        if isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider):
            return untraced  # no SDK configured: every span would be a no-op
        return build_traced()

    app.build_middleware_stack = build_middleware_stack  # type: ignore[method-assign]


def build_resource() -> Resource:
    """``service.name``/``service.instance.id``/``service.version``; ``OTEL_SERVICE_NAME`` and
    ``OTEL_RESOURCE_ATTRIBUTES`` take precedence over these defaults."""
    defaults = Resource.create(
        {
            SERVICE_NAME: "memoserve",
            # One SDK per worker process, so the pid belongs to the instance; the host name is
            # the pod's name in Kubernetes.
            SERVICE_INSTANCE_ID: f"{socket.gethostname()}-{os.getpid()}",
            SERVICE_VERSION: _package_version(),
        }
    )
    return defaults.merge(OTELResourceDetector().detect())


def build_exporters() -> list[SpanExporter]:
    """Exporters named by ``OTEL_TRACES_EXPORTER`` (see the module docstring for defaults)."""
    value = os.environ.get("OTEL_TRACES_EXPORTER", "").strip()
    if not value:
        endpoint = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get(
            "OTEL_EXPORTER_OTLP_ENDPOINT"
        )
        value = "otlp" if endpoint else "none"
    exporters: list[SpanExporter] = []
    for name in (n.strip().lower() for n in value.split(",")):
        if name == "otlp":
            exporters.append(_otlp_exporter())
        elif name == "console":
            exporters.append(ConsoleSpanExporter())
        elif name not in ("none", ""):
            log.warning("OTEL_TRACES_EXPORTER: unknown exporter %r ignored", name)
    return exporters


def _otlp_exporter() -> SpanExporter:
    protocol = (
        os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    )
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as GrpcExporter,
        )

        return GrpcExporter()
    if protocol != "http/protobuf":
        log.warning("OTLP protocol %r is not supported; using http/protobuf", protocol)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
        OTLPSpanExporter as HttpExporter,
    )

    return HttpExporter()


def build_sampler(exporting: bool) -> Sampler | None:
    """Our default sampler, or None to let the SDK read ``OTEL_TRACES_SAMPLER`` itself."""
    if os.environ.get("OTEL_TRACES_SAMPLER"):
        return None
    if not exporting:
        return ALWAYS_OFF
    ratio = DEFAULT_SAMPLE_RATIO
    arg = os.environ.get("OTEL_TRACES_SAMPLER_ARG")
    if arg:
        try:
            ratio = float(arg)
        except ValueError:
            log.warning("OTEL_TRACES_SAMPLER_ARG=%r is not a number; using %s", arg, ratio)
    return ParentBased(TraceIdRatioBased(ratio))


def configure_tracing() -> TracerProvider:
    """Build this process's tracer provider from the environment and make it the global one."""
    exporters = build_exporters()
    provider = TracerProvider(
        resource=build_resource(),
        sampler=build_sampler(bool(exporters)),
        id_generator=DecidedTraceIds(),
    )
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return provider


def _package_version() -> str:
    try:
        return metadata.version("memoserve")
    except metadata.PackageNotFoundError:
        return "unknown"
