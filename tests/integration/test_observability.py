"""Observability of a real replica (gunicorn, two workers, Redis Sentinel): spans exported over
OTLP/HTTP to a receiver on loopback, JSON logs that join to them, and /metrics summed over
the workers."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from devtools.localstack.otlp import OtlpReceiver, ReceivedSpan
from devtools.localstack.processes import Replica, SentinelCluster, wait_until
from tests.integration.conftest import ReplicaFactory
from tests.support.metrics import metric
from tests.support.payloads import dataframe_split

pytestmark = pytest.mark.integration


@dataclass
class Traced:
    replica: Replica
    receiver: OtlpReceiver

    def log_lines(self) -> list[dict[str, Any]]:
        """The replica's log (stdout and stderr), every line parsed as JSON."""
        text = self.replica.proc.log.read_text()
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def access_lines(self, path: str = "/invocations") -> list[dict[str, Any]]:
        lines = self.log_lines()
        return [x for x in lines if x.get("logger") == "memoserve.access" and x["path"] == path]

    def new_access_lines(self, seen: int, count: int) -> list[dict[str, Any]]:
        """The ``count`` access lines after the first ``seen`` (written just after a reply)."""
        wait_until(lambda: len(self.access_lines()) >= seen + count, 5, f"{count} access lines")
        return self.access_lines()[seen : seen + count]

    def trace(self, trace_id: str, *names: str, timeout: float = 10) -> dict[str, ReceivedSpan]:
        """The spans of one trace by name, once all of ``names`` have arrived."""

        def arrived() -> bool:
            return set(names) <= {s.name for s in self.receiver.spans() if s.trace_id == trace_id}

        wait_until(arrived, timeout, f"spans {names} of trace {trace_id}")
        return {s.name: s for s in self.receiver.spans() if s.trace_id == trace_id}


@pytest.fixture(scope="module")
def traced(
    sentinel_cluster: SentinelCluster,
    iris_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Traced]:
    """One replica (two workers, the test defaults) for the module, exporting every span."""
    factory = ReplicaFactory(tmp_path_factory.mktemp("observability"))
    with OtlpReceiver() as receiver:
        try:
            replica = factory(
                MEMOSERVE_MODEL_URI=str(iris_path),
                MEMOSERVE_REDIS_SENTINELS=sentinel_cluster.sentinel_addresses,
                OTEL_TRACES_EXPORTER="otlp",
                OTEL_EXPORTER_OTLP_TRACES_PROTOCOL="http/protobuf",
                OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=receiver.endpoint,
                OTEL_TRACES_SAMPLER="always_on",
                OTEL_BSP_SCHEDULE_DELAY="100",
            )
            yield Traced(replica, receiver)
        finally:
            factory.stop()


def test_a_miss_and_a_hit_as_exported_by_a_worker(traced: Traced) -> None:
    row, later = [6.1, 2.8, 4.7, 1.2], [6.2, 2.9, 4.3, 1.3]
    seen = len(traced.access_lines())
    with httpx.Client(base_url=traced.replica.url) as client:  # one connection: one worker
        for body, outcome in ((row, "MISS"), (row, "HIT"), (later, "MISS")):
            r = client.post("/invocations", json=dataframe_split([body]))
            assert r.headers["x-cache"] == outcome
    miss_line, hit_line, later_line = traced.new_access_lines(seen, 3)
    assert (miss_line["cache"], hit_line["cache"]) == ("MISS", "HIT")

    miss = traced.trace(
        miss_line["trace_id"],
        "POST /invocations",
        "cache.lookup",
        "model.predict",
        "cache.store",
    )
    server = miss["POST /invocations"]
    assert server.span_id == miss_line["span_id"]  # the log line joins to the trace
    assert server.attributes["http.route"] == "/invocations"
    for name in ("cache.lookup", "model.predict", "cache.store"):
        assert miss[name].parent_span_id == server.span_id, name
    assert miss["cache.lookup"].attributes == {
        "cache.hit": False,
        "cache.outcome": "miss",
        "cache.layer": "redis",
        "model.name": "iris",
        "model.version": miss_line["model_version"],
        "model.arm": "champion",
    }
    assert miss["model.predict"].attributes["batch.size"] == 1
    assert miss["cache.store"].attributes == {"cache.layer": "redis", "cache.keys": 1}

    hit = traced.trace(hit_line["trace_id"], "POST /invocations", "cache.lookup")
    assert hit["POST /invocations"].span_id == hit_line["span_id"]
    assert hit["cache.lookup"].attributes["cache.hit"] is True
    assert hit["cache.lookup"].attributes["cache.layer"] == "l1"  # same worker, near-cache
    # A worker exports spans in the order they end. The later request's store, written behind
    # its answer, ends after anything of the hit's could have: once it has arrived, nothing
    # else belongs to the hit's trace.
    traced.trace(later_line["trace_id"], "cache.store")
    assert set(traced.trace(hit_line["trace_id"])) == {"POST /invocations", "cache.lookup"}

    resource = server.resource
    assert resource["service.name"] == "memoserve"
    assert resource["service.version"] == "0.1.0"
    assert str(resource["service.instance.id"]).endswith(f"-{miss_line['pid']}")


def test_a_callers_trace_continues(traced: Traced) -> None:
    trace_id, parent = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    headers = {"traceparent": f"00-{trace_id}-{parent}-01"}
    seen = len(traced.access_lines())
    with httpx.Client(base_url=traced.replica.url) as client:
        client.post("/invocations", json=dataframe_split([[5.5, 2.4, 3.7, 1.0]]), headers=headers)
    spans = traced.trace(trace_id, "POST /invocations", "cache.lookup", "model.predict")
    assert spans["POST /invocations"].parent_span_id == parent
    (line,) = traced.new_access_lines(seen, 1)
    assert line["trace_id"] == trace_id
    assert line["span_id"] == spans["POST /invocations"].span_id


def counted(client: httpx.Client) -> dict[str, float]:
    """The samples the metrics test counts, summed over the workers."""
    return {
        "requests": metric(client, "memoserve_requests_total", route="/invocations", status="200"),
        "timed": metric(client, "memoserve_request_duration_seconds_count", route="/invocations"),
        "hits": metric(client, "memoserve_cache_results_total", result="hit"),
        "redis lookups": metric(client, "memoserve_cache_results_total", layer="redis"),
        "misses": metric(client, "memoserve_cache_results_total", result="miss"),
        "model calls": metric(client, "memoserve_predict_calls_total"),
        "model calls timed": metric(client, "memoserve_predict_duration_seconds_count"),
        "batches": metric(client, "memoserve_predict_batch_rows_count"),
        "batch rows": metric(client, "memoserve_predict_batch_rows_sum"),
        "redis ok": metric(client, "memoserve_redis_commands_total", outcome="ok"),
        "redis errors": metric(client, "memoserve_redis_commands_total", outcome="error"),
    }


def test_metrics_are_summed_over_both_workers(traced: Traced) -> None:
    url = traced.replica.url
    with httpx.Client(base_url=url) as client:
        before = counted(client)
    seen = len(traced.access_lines())
    sent = 0
    pids: set[int] = set()
    while len(pids) < 2 and sent < 400:
        for _ in range(10):  # a new connection each, so that both workers accept some
            r = httpx.post(url + "/invocations", json=dataframe_split([[5.0, 3.4, 1.5, 0.2]]))
            assert r.status_code == 200
            sent += 1
        pids = {x["pid"] for x in traced.new_access_lines(seen, sent)}
    assert len(pids) == 2, "every request went to one worker"
    with httpx.Client(base_url=url) as client:

        def written_behind() -> bool:
            """An MGET for each row L1 did not have, and a write (counted once it has landed,
            after the answer) for each miss; hot-row samples come on top."""
            now = counted(client)
            lookups = now["redis lookups"] - before["redis lookups"]
            return (
                now["redis ok"] - before["redis ok"] >= lookups + now["misses"] - before["misses"]
            )

        wait_until(written_behind, 5, "a Redis round trip counted for each lookup and write")
        after = counted(client)
        text = client.get("/metrics").text
        version = client.get("/readyz").json()["version"]
        reloads = metric(client, "memoserve_model_reloads_total", outcome="ok")
        breaker = metric(client, "memoserve_breaker_state")
    d = {name: after[name] - before[name] for name in after}
    assert d["requests"] == d["timed"] == sent
    assert 1 <= d["misses"] <= 2, d  # each worker's first may miss: the other's write is behind
    assert d["hits"] == sent - d["misses"], d  # one row a request: a hit or a miss
    # Each miss is one model call of one row, timed and sized.
    assert d["model calls"] == d["model calls timed"] == d["batches"] == d["batch rows"], d
    assert d["model calls"] == d["misses"], d
    assert d["redis errors"] == 0, d
    assert reloads == 2  # one start-up load a worker, nothing since
    assert breaker == 0
    assert f'memoserve_model_info{{name="iris",version="{version}"}} 1.0' in text


def test_every_log_line_is_json(traced: Traced) -> None:
    lines = traced.log_lines()  # raises on a line that is not JSON
    assert all({"time", "level", "logger", "message", "pid"} <= set(x) for x in lines)
    booting = [x for x in lines if x["message"].startswith("Booting worker")]
    assert len(booting) == 2 and all(x["logger"] == "gunicorn.error" for x in booting)
    served = [x for x in lines if x.get("logger") == "service.models.manager"]
    assert served and all(x["level"] == "INFO" and "pid" in x for x in served)
