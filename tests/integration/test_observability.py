"""Observability of a real replica (gunicorn, two workers, Redis Sentinel): spans exported over
OTLP/HTTP to a receiver on loopback, JSON logs that join to them, and /metrics summed over
the workers."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from devtools.localstack.otlp import OtlpReceiver, ReceivedSpan
from devtools.localstack.processes import Replica, SentinelCluster, start_replica, wait_until
from tests.conftest import IRIS_COLUMNS
from tests.integration.conftest import REPO, metric

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
    with OtlpReceiver() as receiver:
        env = {
            "MEMOSERVE_NAMESPACE": f"t{uuid.uuid4().hex[:8]}",
            "MEMOSERVE_WORKERS": "2",
            "MEMOSERVE_MODEL_URI": str(iris_path),
            "MEMOSERVE_MODEL_POLL_SECONDS": "0",
            "MEMOSERVE_LOG_LEVEL": "INFO",
            "MEMOSERVE_REDIS_SENTINELS": sentinel_cluster.sentinel_addresses,
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": receiver.endpoint,
            "OTEL_TRACES_SAMPLER": "always_on",
            "OTEL_BSP_SCHEDULE_DELAY": "100",
            "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        }
        replica = start_replica("traced", tmp_path_factory.mktemp("observability"), env)
        try:
            yield Traced(replica, receiver)
        finally:
            replica.stop()


def split(row: list[float]) -> dict[str, Any]:
    return {"dataframe_split": {"columns": IRIS_COLUMNS, "data": [row]}}


def test_a_miss_and_a_hit_as_exported_by_a_worker(traced: Traced) -> None:
    row = [6.1, 2.8, 4.7, 1.2]
    seen = len(traced.access_lines())
    with httpx.Client(base_url=traced.replica.url) as client:  # one connection: one worker
        assert client.post("/invocations", json=split(row)).headers["x-cache"] == "MISS"
        assert client.post("/invocations", json=split(row)).headers["x-cache"] == "HIT"
    miss_line, hit_line = traced.new_access_lines(seen, 2)
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
    }
    assert miss["model.predict"].attributes["batch.size"] == 1
    assert miss["cache.store"].attributes == {"cache.layer": "redis", "cache.keys": 1}

    hit = traced.trace(hit_line["trace_id"], "POST /invocations", "cache.lookup")
    assert hit["POST /invocations"].span_id == hit_line["span_id"]
    assert hit["cache.lookup"].attributes["cache.hit"] is True
    assert hit["cache.lookup"].attributes["cache.layer"] == "l1"  # same worker, near-cache
    time.sleep(0.3)  # two export intervals: nothing else belongs to the hit's trace
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
        client.post("/invocations", json=split([5.5, 2.4, 3.7, 1.0]), headers=headers)
    spans = traced.trace(trace_id, "POST /invocations", "cache.lookup", "model.predict")
    assert spans["POST /invocations"].parent_span_id == parent
    (line,) = traced.new_access_lines(seen, 1)
    assert line["trace_id"] == trace_id
    assert line["span_id"] == spans["POST /invocations"].span_id


def test_metrics_are_summed_over_both_workers(traced: Traced) -> None:
    url = traced.replica.url
    with httpx.Client(base_url=url) as client:
        before = metric(client, "memoserve_requests_total", route="/invocations", status="200")
        timed = metric(client, "memoserve_request_duration_seconds_count", route="/invocations")
    seen = len(traced.access_lines())
    sent = 0
    pids: set[int] = set()
    while len(pids) < 2 and sent < 400:
        for _ in range(10):  # a new connection each, so that both workers accept some
            r = httpx.post(url + "/invocations", json=split([5.0, 3.4, 1.5, 0.2]))
            assert r.status_code == 200
            sent += 1
        pids = {x["pid"] for x in traced.new_access_lines(seen, sent)}
    assert len(pids) == 2, "every request went to one worker"
    with httpx.Client(base_url=url) as client:
        after = metric(client, "memoserve_requests_total", route="/invocations", status="200")
        assert after - before == sent
        duration = metric(client, "memoserve_request_duration_seconds_count", route="/invocations")
        assert duration - timed == sent
        text = client.get("/metrics").text
        version = client.get("/readyz").json()["version"]
        assert f'memoserve_model_info{{name="iris",version="{version}"}} 1.0' in text
        assert metric(client, "memoserve_breaker_state") == 0
        assert metric(client, "memoserve_predict_batch_rows_count") >= 1
        assert metric(client, "memoserve_cache_results_total", result="hit") >= sent - 2
    for name in (
        "memoserve_predict_duration_seconds_bucket",
        "memoserve_predict_calls_total",
        "memoserve_model_reloads_total",
        "memoserve_redis_commands_total",
    ):
        assert name in text


def test_every_log_line_is_json(traced: Traced) -> None:
    lines = traced.log_lines()  # raises on a line that is not JSON
    assert all({"time", "level", "logger", "message", "pid"} <= set(x) for x in lines)
    booting = [x for x in lines if x["message"].startswith("Booting worker")]
    assert len(booting) == 2 and all(x["logger"] == "gunicorn.error" for x in booting)
    served = [x for x in lines if x.get("logger") == "service.models.manager"]
    assert served and all(x["level"] == "INFO" and "pid" in x for x in served)
