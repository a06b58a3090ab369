"""Request metrics by route template and the JSON access line, from the pure ASGI middleware."""

from __future__ import annotations

import json

import httpx
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from starlette.types import Message, Receive, Scope, Send

from service.errors import CacheUnavailable
from service.observability.middleware import RequestObservability
from tests.support.app import AppUnderTest
from tests.support.metrics import cache_rows, request_count, sample
from tests.support.payloads import IRIS_ROWS
from tests.support.payloads import dataframe_split as split

pytestmark = pytest.mark.filterwarnings("ignore:.*NO REDIS.*")


def timed(route: str) -> float:
    return sample("memoserve_request_duration_seconds_count", route=route)


async def test_requests_are_counted_by_route_template(traced_client: httpx.AsyncClient) -> None:
    route = "/v1/models/{name}:predict"
    before = request_count(route, "POST", 200), request_count(route, "POST", 404), timed(route)
    unmatched = request_count("unmatched", "GET", 404)
    await traced_client.post("/v1/models/iris:predict", json={"instances": IRIS_ROWS[:1]})
    await traced_client.post("/v1/models/nope:predict", json={"instances": IRIS_ROWS[:1]})
    await traced_client.get("/no/such/path")
    after = request_count(route, "POST", 200), request_count(route, "POST", 404), timed(route)
    assert [a - b for a, b in zip(after, before, strict=True)] == [1, 1, 2]
    assert request_count("unmatched", "GET", 404) == unmatched + 1


async def test_the_access_line(
    traced_client: httpx.AsyncClient,
    access_lines: list[bytes],
    exported: InMemorySpanExporter,
) -> None:
    r = await traced_client.post("/invocations", json=split(IRIS_ROWS[:1]))
    await traced_client.get("/healthz")  # probes stay off the access log
    (raw,) = access_lines
    assert raw.endswith(b"\n") and raw.count(b"\n") == 1
    line = json.loads(raw)
    assert line["logger"] == "memoserve.access"
    assert (line["method"], line["path"], line["route"], line["status"]) == (
        "POST",
        "/invocations",
        "/invocations",
        200,
    )
    assert line["cache"] == r.headers["x-cache"]
    assert line["model_version"] == r.headers["x-model-version"] == "1"
    assert line["duration_ms"] > 0
    (server,) = [s for s in exported.get_finished_spans() if s.name == "POST /invocations"]
    assert server.context is not None
    assert line["trace_id"] == f"{server.context.trace_id:032x}"
    assert line["span_id"] == f"{server.context.span_id:016x}"


async def test_probes_and_scrapes_are_counted_but_not_logged(
    traced: AppUnderTest, traced_client: httpx.AsyncClient, access_lines: list[bytes]
) -> None:
    before = request_count("/readyz", "GET", 503)
    traced.dataplane.manager.current = None
    assert (await traced_client.get("/readyz")).status_code == 503
    assert (await traced_client.get("/metrics")).status_code == 200
    assert request_count("/readyz", "GET", 503) == before + 1
    assert access_lines == []


async def test_no_cache_is_skipped_and_a_redis_failure_a_bypass(
    traced: AppUnderTest, traced_client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    skipped, bypass = cache_rows("skipped", "memory"), cache_rows("bypass", "memory")
    body = split(IRIS_ROWS[:2])
    r = await traced_client.post("/invocations", json=body, headers={"Cache-Control": "no-cache"})
    assert r.headers["x-cache"] == "MISS"
    assert cache_rows("skipped", "memory") == skipped + 2
    assert cache_rows("bypass", "memory") == bypass

    async def unavailable(keys: object) -> list[bytes | None]:
        raise CacheUnavailable("circuit breaker open")

    monkeypatch.setattr(traced.dataplane.cache.shared, "get_many", unavailable)
    r = await traced_client.post("/invocations", json=body)
    assert r.headers["x-cache"] == "BYPASS"
    assert cache_rows("bypass", "memory") == bypass + 2
    assert cache_rows("skipped", "memory") == skipped + 2


async def ok(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


async def broken(scope: Scope, receive: Receive, send: Send) -> None:
    raise RuntimeError("bug")


async def serve(app: RequestObservability, method: str = "GET", path: str = "/x") -> None:
    scope = {"type": "http", "method": method, "path": path, "headers": []}

    async def receive() -> Message:
        return {"type": "http.request"}

    async def send(message: Message) -> None:
        return None

    await app(scope, receive, send)


async def test_an_exception_counts_as_500() -> None:
    lines: list[bytes] = []
    before = request_count("unmatched", "GET", 500)
    with pytest.raises(RuntimeError):
        await serve(RequestObservability(broken, write=lines.append))
    assert request_count("unmatched", "GET", 500) == before + 1
    assert json.loads(lines[0])["status"] == 500


async def test_unknown_methods_share_one_label_and_the_log_can_be_off() -> None:
    lines: list[bytes] = []
    before = request_count("unmatched", "OTHER", 204)
    await serve(RequestObservability(ok, access_log=False, write=lines.append), "BREW")
    assert request_count("unmatched", "OTHER", 204) == before + 1
    assert lines == []


async def test_a_line_stays_below_pipe_buf_and_a_failed_write_is_ignored() -> None:
    lines: list[bytes] = []
    await serve(RequestObservability(ok, write=lines.append), path="/" + "x" * 10_000)
    assert len(lines[0]) < 4096

    def full(line: bytes) -> int:
        raise BlockingIOError("stdout is full")

    await serve(RequestObservability(ok, write=full))
