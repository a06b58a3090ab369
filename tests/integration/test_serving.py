"""Serving core over real HTTP: gunicorn replicas sharing a real Redis Sentinel cache (and, for
the scenarios that take ``redis_backend``, a real Redis Cluster too)."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import httpx
import joblib
import pytest
import redis

from devtools.localstack.processes import LOOPBACK, SentinelCluster, wait_until
from service.cache.envelope import seal, unseal
from tests.integration.conftest import ReplicaFactory
from tests.support.failover import through_failover
from tests.support.keys import RedisBackend, master_keys, master_ttl, row_entries
from tests.support.metrics import metric
from tests.support.models import CountingModel, calls
from tests.support.payloads import IRIS_COLUMNS, IRIS_ROWS
from tests.support.payloads import dataframe_split as split

pytestmark = pytest.mark.integration


def counting_model(
    tmp_path: Path, cluster: SentinelCluster, *, delay: float
) -> tuple[Path, dict[str, str]]:
    """A CountingModel on disk and the env of a one-worker replica serving it on Sentinel."""
    calls_file = tmp_path / "calls.txt"
    joblib.dump(CountingModel(str(calls_file), delay=delay), tmp_path / "counting.joblib")
    return calls_file, {
        "MEMOSERVE_MODEL_URI": str(tmp_path / "counting.joblib"),
        "MEMOSERVE_MODEL_TRUST": "pickle",  # a joblib file of a test class: code
        "MEMOSERVE_WORKERS": "1",
        "MEMOSERVE_REDIS_SENTINELS": cluster.sentinel_addresses,
    }


def test_a_row_computed_by_one_replica_is_a_hit_on_another(
    redis_backend: RedisBackend, replicas: ReplicaFactory, iris_path: Path
) -> None:
    env = {"MEMOSERVE_MODEL_URI": str(iris_path), **redis_backend.client_env()}
    a, b = replicas(**env), replicas(**env)
    with httpx.Client(base_url=a.url) as ca, httpx.Client(base_url=b.url) as cb:
        first = ca.post("/invocations", json=split(IRIS_ROWS[:1]))
        assert first.status_code == 200
        assert first.headers["x-cache"] == "MISS"
        version = first.headers["x-model-version"]
        wait_until(  # the write is fire-and-forget: it lands right after the answer
            lambda: len(row_entries(redis_backend, replicas.keys, "iris", version)) == 1,
            5,
            "the entry written behind the answer",
        )
        second = cb.post("/invocations", json=split(IRIS_ROWS[:1]))
        assert second.headers["x-cache"] == "HIT"
        assert second.headers["x-model-version"] == version
        assert second.content == first.content
        partial = cb.post("/invocations", json=split(IRIS_ROWS[:2]))
        assert partial.headers["x-cache"] == "PARTIAL"
        assert partial.json() == {"predictions": [0, 2]}

        ns = replicas.namespace
        entries = row_entries(redis_backend, replicas.keys, "iris", version, "predict")
        assert len(entries) == 2
        assert all(0 < master_ttl(redis_backend, k) <= 3600 for k in entries)
        # Beside the entries: the published active version and, when sampled, the hot-row set.
        # Everything memoserve writes expires.
        assert all(master_ttl(redis_backend, k) > 0 for k in master_keys(redis_backend, f"{ns}:*"))


def test_bad_input_gets_4xx_json_and_writes_nothing(
    sentinel_cluster: SentinelCluster, replicas: ReplicaFactory, iris_path: Path
) -> None:
    replica = replicas(
        MEMOSERVE_MODEL_URI=str(iris_path),
        MEMOSERVE_MAX_ROWS="5",
        MEMOSERVE_MAX_BODY_BYTES="2000",
        MEMOSERVE_REDIS_SENTINELS=sentinel_cluster.sentinel_addresses,
        # One worker, so the valid request at the end follows the refused ones on one loop; and
        # every looked-up row sampled, so a refused row that was looked up would show.
        MEMOSERVE_WORKERS="1",
        MEMOSERVE_HOT_SAMPLE_RATE="1",
    )
    ns = replicas.namespace
    record = ", ".join(f'"{c}": 1' for c in IRIS_COLUMNS[1:])
    # A valid one-row request, padded with JSON whitespace past MEMOSERVE_MAX_BODY_BYTES.
    oversized = b'{"instances": [[1, 2, 3, 4]]}'.ljust(3000)
    bad: list[tuple[bytes, int]] = [
        (b"", 422),
        (b"{not json", 422),
        (b'{"instances": [[1, 2, 3]]}', 422),
        (b'{"instances": [[1, 2, 3, "4"]]}', 422),
        (b'{"dataframe_split": {"columns": ["x", "y", "z", "w"], "data": [[1, 2, 3, 4]]}}', 422),
        (b'{"instances": [[1, 2, 3, 4]], "params": {"a": 1}}', 422),
        (
            b'{"instances": [[1, 2, 3, 4], [1, 2, 3, 4], [1, 2, 3, 4], [1, 2, 3, 4], [1, 2, 3, 4],'
            b" [1, 2, 3, 4]]}",
            413,
        ),
        # NaN and infinity: refused as 4xx, never computed (a 200) nor a crash (a 500).
        (b'{"instances": [[1e999, 1, 2, 3]]}', 422),
        (b'{"instances": [[-1e999, 1, 2, 3]]}', 422),
        (
            b'{"dataframe_records": [{"%s": NaN, %s}]}'
            % (IRIS_COLUMNS[0].encode(), record.encode()),
            422,
        ),
        (
            b'{"dataframe_records": [{"%s": Infinity, %s}]}'
            % (IRIS_COLUMNS[0].encode(), record.encode()),
            422,
        ),
        (oversized, 413),
    ]
    codes = {413: "payload_too_large", 422: "invalid_input"}
    with httpx.Client(base_url=replica.url) as c:
        for content, status in bad:
            r = c.post(
                "/invocations", content=content, headers={"Content-Type": "application/json"}
            )
            assert r.status_code == status, (content, r.text)
            assert set(r.json()["error"]) == {"code", "message", "details"}
            assert r.json()["error"]["code"] == codes[status], (content, r.text)

        # The same oversized body without Content-Length: httpx sends an iterator chunked.
        chunks = iter([oversized[i : i + 500] for i in range(0, len(oversized), 500)])
        r = c.post("/invocations", content=chunks, headers={"Content-Type": "application/json"})
        assert "content-length" not in r.request.headers
        assert r.request.headers["transfer-encoding"] == "chunked"
        assert r.status_code == 413, r.text
        assert r.json()["error"]["code"] == "payload_too_large"
        assert set(r.json()["error"]) == {"code", "message", "details"}

        r = c.post("/v1/models/other:predict", json={"instances": [[1, 2, 3, 4]]})
        assert r.status_code == 404
        assert set(r.json()["error"]) == {"code", "message", "details"}
        assert r.json()["error"]["code"] == "model_not_found"
        active = replicas.keys.active("iris").encode()
        assert master_keys(sentinel_cluster, f"{ns}:*") == [active]

        # A valid request after the refused ones: its entry and its hot-row sample land behind
        # its answer, as a refused request's would have landed before them.
        r = c.post("/invocations", json=split(IRIS_ROWS[:1]))
        assert (r.status_code, r.headers["x-cache"]) == (200, "MISS")
    version = r.headers["x-model-version"]
    hot = replicas.keys.hot("iris", version, "predict").encode()

    def written() -> set[bytes]:
        return set(master_keys(sentinel_cluster, f"{ns}:*"))

    wait_until(lambda: len(written()) == 3, 5, "the valid request's entry and hot sample")
    (entry,) = row_entries(sentinel_cluster, replicas.keys, "iris", version, "predict")
    # Beside what the replica published at start-up, only the valid request's row, once.
    assert written() == {active, entry, hot}
    with redis.Redis(LOOPBACK, sentinel_cluster.current_master_port(), socket_timeout=2) as db:
        assert db.zcard(hot) == 1


def test_cache_control_over_redis(
    sentinel_cluster: SentinelCluster, replicas: ReplicaFactory, iris_path: Path
) -> None:
    replica = replicas(
        MEMOSERVE_MODEL_URI=str(iris_path),
        MEMOSERVE_L1_ENABLED="false",
        MEMOSERVE_REDIS_SENTINELS=sentinel_cluster.sentinel_addresses,
        MEMOSERVE_WORKERS="1",  # later writes follow earlier ones on one loop
    )

    def entries() -> list[bytes]:
        return row_entries(sentinel_cluster, replicas.keys, "iris", output="predict")

    with (
        httpx.Client(base_url=replica.url, timeout=10) as c,
        redis.Redis(LOOPBACK, sentinel_cluster.current_master_port(), socket_timeout=2) as db,
    ):
        first = c.post("/invocations", json=split(IRIS_ROWS[:1]))
        assert first.status_code == 200
        assert first.headers["x-cache"] == "MISS"
        real = first.content
        wait_until(lambda: len(entries()) == 1, 5, "the entry written behind the answer")
        assert len(entries()) == 1
        (key,) = entries()
        real_value = db.get(key)
        assert real == b'{"predictions":[' + unseal(real_value) + b"]}"

        # A value only Redis holds: answered from Redis (the L1 is off).
        db.set(key, seal(b"42"), ex=600)
        r = c.post("/invocations", json=split(IRIS_ROWS[:1]))
        assert (r.status_code, r.headers["x-cache"]) == (200, "HIT")
        assert r.content == b'{"predictions":[42]}'

        # no-cache: computed again, answered MISS, and the fresh value replaces the entry.
        r = c.post("/invocations", json=split(IRIS_ROWS[:1]), headers={"Cache-Control": "no-cache"})
        assert (r.status_code, r.headers["x-cache"]) == (200, "MISS")
        assert r.content == real
        wait_until(lambda: db.get(key) == real_value, 5, "the recomputed value written back")
        assert db.get(key) == real_value
        assert 0 < db.ttl(key) <= 3600
        r = c.post("/invocations", json=split(IRIS_ROWS[:1]))
        assert (r.status_code, r.headers["x-cache"]) == (200, "HIT")
        assert r.content == real

        # no-store: answered, but nothing written.
        r = c.post(
            "/invocations", json=split(IRIS_ROWS[1:2]), headers={"Cache-Control": "no-store"}
        )
        assert (r.status_code, r.headers["x-cache"]) == (200, "MISS")
        assert r.json() == {"predictions": [2]}
        # A later request's entry lands behind its answer, as the no-store one's would have.
        r = c.post("/invocations", json=split(IRIS_ROWS[2:3]))
        assert (r.status_code, r.headers["x-cache"]) == (200, "MISS")
        assert r.json() == {"predictions": [1]}

        def answers() -> list[bytes]:
            return sorted(unseal(db.get(k)) or b"not a frame" for k in entries())

        wait_until(lambda: b"1" in answers(), 5, "the later request's entry")
        assert answers() == [b"0", b"1"], "a no-store answer was written to Redis"
        r = c.post("/invocations", json=split(IRIS_ROWS[1:2]))
        assert (r.status_code, r.headers["x-cache"]) == (200, "MISS")
        assert r.json() == {"predictions": [2]}


async def test_concurrent_misses_of_different_rows_are_batched(
    replicas: ReplicaFactory, tmp_path: Path, sentinel_cluster: SentinelCluster
) -> None:
    calls_file, env = counting_model(tmp_path, sentinel_cluster, delay=0.3)
    max_rows = 4
    replica = replicas(
        **env, MEMOSERVE_BATCH_MAX_ROWS=str(max_rows), MEMOSERVE_BATCH_MAX_WAIT_MS="5"
    )
    rows = [[float(i), 1.0, 2.0, 3.0] for i in range(24)]
    limits = httpx.Limits(max_connections=30)
    async with httpx.AsyncClient(base_url=replica.url, limits=limits, timeout=30) as c:
        answers = await asyncio.gather(
            *(c.post("/invocations", json={"instances": [row]}) for row in rows)
        )
    assert [a.status_code for a in answers] == [200] * 24
    assert [a.json() for a in answers] == [{"predictions": [sum(row)]} for row in rows]
    assert all(a.headers["x-cache"] == "MISS" for a in answers)
    # While one model call runs (one thread), the next requests' rows queue up and go in one
    # call. All 24 fit in ceil(24 / 4) = 6 calls; the first calls run before the queue has
    # filled (3 allowed for them): 9, where unmerged rows take 24.
    per_call = calls(calls_file)
    assert sum(per_call) == 24, per_call
    assert max(per_call) <= max_rows, per_call
    assert len(per_call) <= math.ceil(24 / max_rows) + 3, f"too few rows merged: {per_call}"


async def test_concurrent_identical_misses_call_the_model_once(
    replicas: ReplicaFactory, tmp_path: Path, sentinel_cluster: SentinelCluster
) -> None:
    calls_file, env = counting_model(tmp_path, sentinel_cluster, delay=0.5)
    replica = replicas(**env)
    limits = httpx.Limits(max_connections=60)
    async with httpx.AsyncClient(base_url=replica.url, limits=limits, timeout=30) as c:
        answers = await asyncio.gather(
            *(c.post("/invocations", json={"instances": [[1, 2, 3, 4]]}) for _ in range(50))
        )
    assert {a.status_code for a in answers} == {200}
    assert {a.content for a in answers} == {b'{"predictions":[10.0]}'}
    assert calls(calls_file) == [1]


async def test_distributed_coalescing_spans_replicas(
    replicas: ReplicaFactory, tmp_path: Path, sentinel_cluster: SentinelCluster
) -> None:
    calls_file, env = counting_model(tmp_path, sentinel_cluster, delay=0.5)
    env["MEMOSERVE_COALESCE"] = "distributed"
    a, b = replicas(**env), replicas(**env)
    async with (
        httpx.AsyncClient(base_url=a.url, timeout=30) as ca,
        httpx.AsyncClient(base_url=b.url, timeout=30) as cb,
    ):
        body = {"instances": [[4, 3, 2, 1]]}
        answers = await asyncio.gather(
            *(c.post("/invocations", json=body) for _ in range(10) for c in (ca, cb))
        )
    waits = 0.0
    for replica in (a, b):
        with httpx.Client(base_url=replica.url) as c:
            waits += metric(c, "memoserve_coalesced_waits_total")
    assert {r.status_code for r in answers} == {200}
    assert {r.content for r in answers} == {b'{"predictions":[10.0]}'}
    assert calls(calls_file) == [1], "both replicas computed the same row"
    assert waits >= 19


def test_sentinel_failover_under_steady_traffic(
    own_cluster: SentinelCluster, replicas: ReplicaFactory, iris_path: Path
) -> None:
    replica = replicas(
        MEMOSERVE_MODEL_URI=str(iris_path),
        MEMOSERVE_L1_ENABLED="false",
        MEMOSERVE_BREAKER_RESET_SECONDS="0.5",
        MEMOSERVE_REDIS_SENTINELS=own_cluster.sentinel_addresses,
    )
    rows = [[5.0 + i / 10, 3.0, 1.5, 0.2] for i in range(20)]
    old_master = own_cluster.current_master_port()
    with httpx.Client(base_url=replica.url, timeout=10) as c:
        for row in rows:
            assert c.post("/invocations", json=split([row])).status_code == 200
        assert own_cluster.replica is not None
        with redis.Redis(LOOPBACK, own_cluster.replica.port) as replica_db:
            wait_until(  # the writes replicate before the crash
                lambda: replica_db.dbsize() >= len(rows), 10, "the entries on the replica"
            )
        assert own_cluster.master is not None
        run = through_failover(c, rows, own_cluster.master.kill)
    assert set(run.statuses) == {200}, f"non-200 answers during failover: {set(run.statuses)}"
    assert own_cluster.current_master_port() != old_master
    assert run.resumed_at, f"hits did not resume; last outcomes {run.outcomes[-20:]}"
    print(f"\nfailover: {run.summary()}")


def test_redis_gone_every_answer_is_bypass_and_the_breaker_stops_attempts(
    own_cluster: SentinelCluster, replicas: ReplicaFactory, iris_path: Path
) -> None:
    replica = replicas(
        MEMOSERVE_MODEL_URI=str(iris_path),
        MEMOSERVE_WORKERS="1",
        MEMOSERVE_L1_ENABLED="false",
        MEMOSERVE_BREAKER_FAILURE_THRESHOLD="3",
        MEMOSERVE_BREAKER_RESET_SECONDS="600",
        # Background work (hot-row samples) has a breaker of its own, which opens after its own
        # failures (tests/integration/chaos); this test counts what the request path attempts.
        MEMOSERVE_WARMUP_TOP_K="0",
        MEMOSERVE_REDIS_SENTINELS=own_cluster.sentinel_addresses,
    )
    with httpx.Client(base_url=replica.url, timeout=10) as c:
        assert c.post("/invocations", json=split(IRIS_ROWS[:1])).headers["x-cache"] == "MISS"
        own_cluster.stop()

        def attempts() -> float:
            return metric(c, "memoserve_redis_commands_total", outcome="ok") + metric(
                c, "memoserve_redis_commands_total", outcome="error"
            )

        def send(n: int) -> list[str]:
            out = []
            for k in range(n):
                r = c.post("/invocations", json=split([[4.0 + k / 100, 3.0, 1.0, 0.1]]))
                assert r.status_code == 200
                out.append(r.headers["x-cache"])
            return out

        assert set(send(10)) == {"BYPASS"}
        assert metric(c, "memoserve_breaker_state") == 2  # open
        opened = attempts()
        rejected = metric(c, "memoserve_redis_commands_total", outcome="rejected")
        assert set(send(30)) == {"BYPASS"}
        assert attempts() == opened, "requests still reach Redis with the breaker open"
        assert metric(c, "memoserve_redis_commands_total", outcome="rejected") >= rejected + 30
