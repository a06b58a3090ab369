"""One trace tells whether the prediction came from the cache (in-process app, in-memory
exporter): a miss has lookup, model call and store under the server span; a hit has no model
call."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from service.cache.tiered import Lookup
from service.observability import spans
from tests.support.app import AppUnderTest
from tests.support.payloads import IRIS_ROWS
from tests.support.payloads import dataframe_split as split

pytestmark = pytest.mark.filterwarnings("ignore:.*NO REDIS.*")


def by_name(finished: Sequence[ReadableSpan]) -> dict[str, list[ReadableSpan]]:
    out: dict[str, list[ReadableSpan]] = {}
    for span in finished:
        out.setdefault(span.name, []).append(span)
    return out


def server_span(named: dict[str, list[ReadableSpan]]) -> ReadableSpan:
    (server,) = named["POST /invocations"]
    assert server.kind is SpanKind.SERVER
    return server


def parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


async def settle(traced: AppUnderTest) -> None:
    """Let the background store finish (its span ends after the response)."""
    await traced.dataplane.cache.drain()


async def test_a_miss_then_a_hit(
    traced: AppUnderTest, traced_client: httpx.AsyncClient, exported: InMemorySpanExporter
) -> None:
    r = await traced_client.post("/invocations", json=split(IRIS_ROWS[:1]))
    assert r.headers["x-cache"] == "MISS"
    await settle(traced)
    named = by_name(exported.get_finished_spans())
    server = server_span(named)
    assert server.attributes is not None and server.attributes["http.route"] == "/invocations"
    (lookup,) = named["cache.lookup"]
    (predict,) = named["model.predict"]
    (store,) = named["cache.store"]
    for span in (lookup, predict, store):
        assert span.context is not None and server.context is not None
        assert span.context.trace_id == server.context.trace_id
        assert parent_id(span) == server.context.span_id
    assert dict(lookup.attributes or {}) == {
        "cache.hit": False,
        "cache.outcome": "miss",
        "cache.layer": "memory",
        "model.arm": "champion",
        "model.name": "iris",
        "model.version": "1",
    }
    server_attributes = server.attributes or {}
    assert (server_attributes["model.arm"], server_attributes["model.version"]) == ("champion", "1")
    assert dict(predict.attributes or {}) == {
        "model.name": "iris",
        "model.version": "1",
        "batch.size": 1,
        "batch.requests": 1,
    }
    assert dict(store.attributes or {}) == {"cache.layer": "memory", "cache.keys": 1}

    exported.clear()
    r = await traced_client.post("/invocations", json=split(IRIS_ROWS[:1]))
    assert r.headers["x-cache"] == "HIT"
    await settle(traced)
    named = by_name(exported.get_finished_spans())
    server = server_span(named)
    (lookup,) = named["cache.lookup"]
    assert server.context is not None and parent_id(lookup) == server.context.span_id
    assert lookup.attributes is not None and lookup.attributes["cache.hit"] is True
    assert lookup.attributes["cache.outcome"] == "hit"
    assert "model.predict" not in named and "cache.store" not in named


async def test_a_batch_counts_hits_and_misses(
    traced: AppUnderTest, traced_client: httpx.AsyncClient, exported: InMemorySpanExporter
) -> None:
    await traced_client.post("/invocations", json=split(IRIS_ROWS[1:2]))
    exported.clear()
    r = await traced_client.post("/invocations", json=split(IRIS_ROWS[1:]))
    assert r.headers["x-cache"] == "PARTIAL"
    await settle(traced)
    named = by_name(exported.get_finished_spans())
    (lookup,) = named["cache.lookup"]
    attributes = dict(lookup.attributes or {})
    assert (attributes["cache.hits"], attributes["cache.misses"]) == (1, 1)
    assert attributes["cache.outcome"] == "partial"
    assert "cache.hit" not in attributes
    (predict,) = named["model.predict"]
    assert predict.attributes is not None and predict.attributes["batch.size"] == 1


async def test_concurrent_misses_share_one_model_call(
    traced: AppUnderTest, traced_client: httpx.AsyncClient, exported: InMemorySpanExporter
) -> None:
    """The coalesced request waits in a ``coalesce.wait`` span; the model call is linked to
    every sampled request it served and parented by the first."""
    row = [[4.4, 2.9, 1.4, 0.2]]
    answers = await asyncio.gather(
        *(traced_client.post("/invocations", json=split(row)) for _ in range(3))
    )
    assert [a.headers["x-cache"] for a in answers] == ["MISS"] * 3
    await settle(traced)
    named = by_name(exported.get_finished_spans())
    servers = {s.context.span_id for s in named["POST /invocations"] if s.context is not None}
    assert len(servers) == 3
    (predict,) = named["model.predict"]
    waits = named["coalesce.wait"]
    assert len(waits) == 2
    assert {parent_id(w) for w in waits} | {parent_id(predict)} == servers
    assert all((w.attributes or {})["coalesce.scope"] == "local" for w in waits)


async def test_no_cache_skips_the_lookup_span(
    traced: AppUnderTest, traced_client: httpx.AsyncClient, exported: InMemorySpanExporter
) -> None:
    await traced_client.post(
        "/invocations", json=split(IRIS_ROWS[:1]), headers={"Cache-Control": "no-cache"}
    )
    await settle(traced)
    named = by_name(exported.get_finished_spans())
    assert "cache.lookup" not in named and "model.predict" in named


async def test_probes_are_not_traced(
    traced_client: httpx.AsyncClient, exported: InMemorySpanExporter
) -> None:
    for path in ("/healthz", "/readyz", "/metrics"):
        assert (await traced_client.get(path)).status_code == 200
    assert exported.get_finished_spans() == ()


async def test_helpers_do_nothing_outside_a_recording_span(exported: InMemorySpanExporter) -> None:
    with spans.child_span("cache.lookup") as span:
        assert not span.is_recording()
    with spans.background_span("cache.store") as span:
        assert not span.is_recording()
    with spans.batch_span("model.predict", []) as span:
        assert not span.is_recording()
    assert exported.get_finished_spans() == ()


async def test_a_failed_lookup_marks_its_span(exported: InMemorySpanExporter) -> None:
    from opentelemetry import trace

    from service.models.loaded import LoadedModel

    model = LoadedModel("iris", "3", schema=None, predictor=None)  # type: ignore[arg-type]
    tracer = trace.get_tracer("test")
    with tracer.start_as_current_span("request"), spans.child_span("cache.lookup") as span:
        spans.annotate_lookup(span, model, Lookup([None, None], 0, "redis", bypass=True))
    (lookup,) = by_name(exported.get_finished_spans())["cache.lookup"]
    assert lookup.status.status_code is StatusCode.ERROR
    attributes = dict(lookup.attributes or {})
    assert attributes["cache.error"] is True and attributes["cache.misses"] == 2
    assert attributes["cache.outcome"] == "bypass"
