"""Tracer set-up from ``OTEL_*`` and the head-sampling gate in front of the instrumentation."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SpanExporter
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    ParentBased,
    Sampler,
    TraceIdRatioBased,
)
from opentelemetry.trace import SpanContext
from starlette.types import Message, Receive, Scope, Send

from service.observability import tracing

OTEL_VARIABLES = (
    "OTEL_TRACES_EXPORTER",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
)
CALLER_TRACE_ID = 0x4BF92F3577B34DA6A3CE929D0E0E4736


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in OTEL_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def exporters() -> Iterator[list[SpanExporter]]:
    built: list[SpanExporter] = []
    yield built
    for exporter in built:
        exporter.shutdown()


def kinds(monkeypatch: pytest.MonkeyPatch, built: list[SpanExporter], **env: str) -> list[type]:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    found = tracing.build_exporters()
    built.extend(found)
    return [type(e) for e in found]


def test_exporter_defaults_to_none_unless_an_endpoint_is_set(
    monkeypatch: pytest.MonkeyPatch, exporters: list[SpanExporter]
) -> None:
    assert kinds(monkeypatch, exporters) == []
    endpoint = "http://127.0.0.1:4318"
    assert kinds(monkeypatch, exporters, OTEL_EXPORTER_OTLP_ENDPOINT=endpoint) == [HttpExporter]


def test_exporters_by_name(monkeypatch: pytest.MonkeyPatch, exporters: list[SpanExporter]) -> None:
    assert kinds(monkeypatch, exporters, OTEL_TRACES_EXPORTER="none") == []
    assert kinds(monkeypatch, exporters, OTEL_TRACES_EXPORTER="console") == [ConsoleSpanExporter]
    assert kinds(monkeypatch, exporters, OTEL_TRACES_EXPORTER="otlp,console") == [
        HttpExporter,
        ConsoleSpanExporter,
    ]
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc")
    assert kinds(monkeypatch, exporters, OTEL_TRACES_EXPORTER="otlp") == [GrpcExporter]
    assert kinds(monkeypatch, exporters, OTEL_TRACES_EXPORTER="zipkin-ish") == []


def test_default_sampler(monkeypatch: pytest.MonkeyPatch) -> None:
    sampler = tracing.build_sampler(exporting=True)
    expected = ParentBased(TraceIdRatioBased(tracing.DEFAULT_SAMPLE_RATIO))
    assert sampler is not None
    assert sampler.get_description() == expected.get_description()
    assert tracing.build_sampler(exporting=False) is ALWAYS_OFF
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0.5")
    sampler = tracing.build_sampler(exporting=True)
    assert sampler is not None and "0.5" in sampler.get_description()
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_on")
    assert tracing.build_sampler(exporting=True) is None  # the SDK reads the variables


def test_resource(monkeypatch: pytest.MonkeyPatch) -> None:
    attributes = tracing.build_resource().attributes
    assert attributes["service.name"] == "memoserve"
    assert attributes["service.version"] == "0.1.0"
    assert str(attributes["service.instance.id"]).endswith(f"-{__import__('os').getpid()}")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "memoserve-canary")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "service.instance.id=pod-a,team=ml")
    attributes = tracing.build_resource().attributes
    assert attributes["service.name"] == "memoserve-canary"
    assert attributes["service.instance.id"] == "pod-a"
    assert attributes["team"] == "ml"


class Recorder:
    """An ASGI app that notes the span context it runs in."""

    def __init__(self, provider: TracerProvider | None = None) -> None:
        self.seen: list[SpanContext] = []
        self._tracer = provider.get_tracer("test") if provider else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._tracer is not None:  # stands in for the instrumentation's server span
            with self._tracer.start_as_current_span("server") as span:
                self.seen.append(span.get_span_context())
        else:
            self.seen.append(trace.get_current_span().get_span_context())


async def call(app: tracing.HeadSampling, traceparent: str | None = None) -> None:
    headers = [(b"host", b"test")]
    if traceparent:
        headers.append((b"traceparent", traceparent.encode()))
    scope = {"type": "http", "method": "GET", "path": "/", "headers": headers}

    async def receive() -> Message:
        return {"type": "http.request"}

    async def send(message: Message) -> None:
        return None

    await app(scope, receive, send)


def gate(sampler: Sampler) -> tuple[tracing.HeadSampling, Recorder, Recorder]:
    traced, untraced = Recorder(), Recorder()
    return tracing.HeadSampling(traced, untraced, sampler), traced, untraced


async def test_unsampled_requests_skip_the_instrumentation_but_get_ids() -> None:
    app, traced, untraced = gate(ALWAYS_OFF)
    await call(app)
    await call(app)
    assert traced.seen == []
    first, second = untraced.seen
    assert first.is_valid and not first.trace_flags.sampled
    assert first.trace_id != second.trace_id
    assert not trace.get_current_span().get_span_context().is_valid  # detached again


async def test_a_callers_decision_is_kept() -> None:
    sampled = f"00-{CALLER_TRACE_ID:032x}-00f067aa0ba902b7-01"
    unsampled = sampled[:-2] + "00"
    app, traced, untraced = gate(ParentBased(ALWAYS_OFF))
    await call(app, sampled)
    assert len(traced.seen) == 1 and untraced.seen == []
    app, traced, untraced = gate(ParentBased(ALWAYS_ON))
    await call(app, unsampled)
    (context,) = untraced.seen
    assert context.trace_id == CALLER_TRACE_ID  # the logs can be joined to the caller's
    assert traced.seen == []


async def test_lifespan_goes_to_the_plain_stack() -> None:
    app, traced, untraced = gate(ALWAYS_ON)
    await app({"type": "lifespan"}, None, None)  # type: ignore[arg-type]
    assert traced.seen == [] and len(untraced.seen) == 1


async def test_the_sdk_takes_the_same_decision_on_the_same_trace_id() -> None:
    """Half the requests pass the gate; every one of them is recorded by the SDK (not a
    quarter: the second decision would otherwise be a new coin toss) on the gate's trace id."""
    provider = TracerProvider(
        sampler=TraceIdRatioBased(0.5), id_generator=tracing.DecidedTraceIds()
    )
    traced, untraced = Recorder(provider), Recorder()
    app = tracing.HeadSampling(traced, untraced, provider.sampler)
    for _ in range(400):
        await call(app)
    assert 120 < len(traced.seen) < 280
    assert all(c.trace_flags.sampled for c in traced.seen)
    assert len(traced.seen) + len(untraced.seen) == 400


def test_without_an_sdk_the_plain_stack_serves(monkeypatch: pytest.MonkeyPatch) -> None:
    from fastapi import FastAPI

    monkeypatch.setattr(trace, "get_tracer_provider", trace.ProxyTracerProvider)
    app = FastAPI()
    tracing.instrument_app(app)
    assert not isinstance(app.build_middleware_stack(), tracing.HeadSampling)
