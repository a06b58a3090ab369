"""Redis misbehaving under a serving replica: slow, stalled, asleep, garbled, or refusing the
background work. Every answer must be a 200 from the model, the breaker must open and close,
and background failures must not open the breaker that guards reads."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
import pytest
import redis

from devtools.localstack.faults import FaultProxy
from devtools.localstack.processes import LOOPBACK, Proc, wait_until
from service.cache.envelope import unseal
from tests.integration.chaos.conftest import Report
from tests.integration.conftest import ReplicaFactory
from tests.support.metrics import metric
from tests.support.payloads import IRIS_ROWS
from tests.support.traffic import Tally, ask

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

OPEN, CLOSED = 2.0, 0.0


def serving_from(proxy: FaultProxy, replicas: ReplicaFactory, iris: Path, **env: str) -> str:
    """One single-worker replica on Redis through the proxy, no near-cache: every lookup
    goes to Redis."""
    replica = replicas(
        MEMOSERVE_MODEL_URI=str(iris),
        MEMOSERVE_REDIS_URL=f"redis://{proxy.address}",
        MEMOSERVE_L1_ENABLED="false",
        MEMOSERVE_WORKERS="1",
        **env,
    )
    return replica.url


def test_slow_stalled_and_sleeping_redis_never_fail_an_answer(
    redis_behind_proxy: tuple[Proc, FaultProxy],
    replicas: ReplicaFactory,
    iris_path: Path,
    report: Report,
) -> None:
    server, proxy = redis_behind_proxy
    url = serving_from(proxy, replicas, iris_path)
    tally = Tally()
    with httpx.Client(base_url=url, timeout=5) as c:
        assert ask(c).cache == "MISS"
        wait_until(lambda: ask(c).cache == "HIT", 5, "the entry in Redis")

        def phase(n: int = 20) -> None:
            for _ in range(n):
                tally.add(ask(c))

        proxy.set(latency=0.5)  # ten times the socket timeout
        phase()
        assert metric(c, "memoserve_breaker_state") == OPEN
        assert metric(c, "memoserve_redis_commands_total", outcome="rejected") > 0
        proxy.set(stall=True)  # a peer that holds every byte and never closes
        phase()
        proxy.set()
        wait_until(lambda: ask(c).cache == "HIT", 10, "hits after Redis recovered")
        assert metric(c, "memoserve_breaker_state") == CLOSED

        sleeper = threading.Thread(
            target=lambda: redis.Redis(LOOPBACK, server.port).execute_command("DEBUG", "SLEEP", 2)
        )
        sleeper.start()
        wait_until(lambda: ask(c).cache == "BYPASS", 5, "answers without the sleeping master")
        while sleeper.is_alive():
            tally.add(ask(c))
        sleeper.join()
        wait_until(lambda: ask(c).cache == "HIT", 10, "hits after the master woke up")
    report.record(
        "Redis slow (500 ms), stalled, DEBUG SLEEP 2",
        requests=tally.requests,
        non_200=len(tally.non_200),
    )
    assert tally.non_200 == []
    assert "BYPASS" in tally.caches()
    assert {a.body for a in tally.answers} == {b'{"predictions":[0]}'}


def test_garbled_entries_are_recomputed_overwritten_and_counted(
    redis_behind_proxy: tuple[Proc, FaultProxy],
    replicas: ReplicaFactory,
    iris_path: Path,
    report: Report,
) -> None:
    server, proxy = redis_behind_proxy
    url = serving_from(proxy, replicas, iris_path)
    keys = replicas.keys
    tally = Tally()
    with (
        httpx.Client(base_url=url, timeout=5) as c,
        redis.Redis(LOOPBACK, server.port) as db,
    ):
        expected = [ask(c, [row]).body for row in IRIS_ROWS]
        pattern = keys.row_prefix("iris", "*", "*") + "*"
        wait_until(lambda: len(list(db.scan_iter(match=pattern))) == 3, 5, "three entries")
        rows = sorted(db.scan_iter(match=pattern))
        good = {k: db.get(k) for k in rows}
        garbage = [b"\x00\xff garbage", b'{"predictions": [', b'["a", "shape"]', b"null"]
        before = metric(c, "memoserve_cache_corrupt_entries_total")
        for value in garbage:
            for key in rows:
                db.set(key, value, ex=600)
            for row, body in zip(IRIS_ROWS, expected, strict=True):
                answer = ask(c, [row])
                tally.add(answer)
                assert (answer.status, answer.body) == (200, body)
            wait_until(lambda: all(db.get(k) == good[k] for k in rows), 5, "entries rewritten")
        assert metric(c, "memoserve_cache_corrupt_entries_total") == before + len(garbage) * 3
        assert all(unseal(db.get(k) or b"") is not None for k in rows)
    report.record(
        "Garbled, truncated, foreign and null entries",
        requests=tally.requests,
        non_200=len(tally.non_200),
    )
    assert tally.non_200 == []


def test_failing_background_work_does_not_open_the_read_breaker(
    redis_behind_proxy: tuple[Proc, FaultProxy],
    replicas: ReplicaFactory,
    iris_path: Path,
    report: Report,
) -> None:
    """Every hot-row sample is refused by Redis (an ACL without ZINCRBY): reads stay hits."""
    server, proxy = redis_behind_proxy
    with redis.Redis(LOOPBACK, server.port) as db:
        db.execute_command("ACL", "SETUSER", "default", "-zincrby")
    try:
        url = serving_from(proxy, replicas, iris_path, MEMOSERVE_HOT_SAMPLE_RATE="1")
        tally = Tally()
        with httpx.Client(base_url=url, timeout=5) as c:
            ask(c)
            wait_until(lambda: ask(c).cache == "HIT", 5, "the entry in Redis")
            for _ in range(30):  # each one samples, and each sample fails
                tally.add(ask(c))
            # Enough failures to open a breaker (the background one, which then rejects)...
            assert metric(c, "memoserve_redis_commands_total", outcome="error") >= 5
            assert metric(c, "memoserve_redis_commands_total", outcome="rejected") > 0
            # ...but not the one in front of the reads.
            assert metric(c, "memoserve_breaker_state") == CLOSED
    finally:
        with redis.Redis(LOOPBACK, server.port) as db:
            db.execute_command("ACL", "SETUSER", "default", "+zincrby")
    report.record(
        "Background writes refused (hot rows)", requests=tally.requests, non_200=len(tally.non_200)
    )
    assert tally.non_200 == [] and tally.caches() == {"HIT"}
