"""Promotion against a real `mlflow server`: push and poll paths, purge, warm-up, MLflow down."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis

from devtools.localstack.processes import (
    LOOPBACK,
    Proc,
    Replica,
    SentinelCluster,
    start_mlflow,
    wait_until,
)
from memoserve_models import registry
from service.cache.hot import HOT_TTL_SECONDS
from service.cache.keys import KeySpace
from tests.integration.conftest import ReplicaFactory
from tests.support.events import forged, signed
from tests.support.keys import RedisBackend, published, version_keys
from tests.support.metrics import metric
from tests.support.payloads import dataframe_split
from tests.support.registry import PROBE, ask, mlflow_call, register_v1_v2, wait_for_version
from tests.support.webhooks import deliver as signed_delivery

pytestmark = pytest.mark.integration
# The MLflow server (mlflow_server) and the shared two-version model (iris_v1_v2) are fixtures
# of tests/integration/conftest.py; PROBE, ask and wait_for_version are tests/support/registry's.

SECRET = "integration-test-secret"
HOT = [[6.7, 3.0, 5.2, 2.3]]


def env_for(name: str, tracking: str, cluster: RedisBackend, cache: Path) -> dict[str, str]:
    return {
        "MEMOSERVE_MODEL_URI": f"models:/{name}@champion",
        "MEMOSERVE_MLFLOW_TRACKING_URI": tracking,
        **cluster.client_env(),
        "MEMOSERVE_WEBHOOK_SECRET": SECRET,
        "MEMOSERVE_MODEL_CACHE_DIR": str(cache),
        "MEMOSERVE_WORKERS": "1",  # a replica here is one worker: "never v1 again" is per process
    }


def deliver(replica: Replica, payload: dict[str, Any], secret: str, ts: str) -> httpx.Response:
    """A webhook delivery as MLflow signs it."""
    return signed_delivery(replica.url, payload, secret, ts)


def test_push_path_switches_every_replica_purges_and_warms(
    mlflow_server: str,
    iris_v1_v2: str,
    redis_backend: RedisBackend,
    replicas: ReplicaFactory,
    tmp_path: Path,
) -> None:
    """On Sentinel and on Redis Cluster (whose purge must visit every primary)."""
    name = iris_v1_v2
    keys = replicas.keys
    env = env_for(name, mlflow_server, redis_backend, tmp_path / "cache")
    # Two workers per replica: a replica's answers must not go back to v1 even though each
    # worker swaps on its own (the "serving" announcement fences the slower worker).
    env.update(
        MEMOSERVE_HOT_SAMPLE_RATE="1", MEMOSERVE_MODEL_POLL_SECONDS="0", MEMOSERVE_WORKERS="2"
    )
    a, b = replicas(**env), replicas(**env)

    assert ask(a).headers["x-model-version"] == "1"
    assert ask(a).json() == {"predictions": [0]}
    for _ in range(3):
        ask(b, HOT)
    assert ask(b).headers["x-cache"] == "HIT"

    # The alias moves while nothing tells the replicas: forged or stale deliveries of that very
    # event are refused and change nothing; the same delivery, correctly signed, switches both.
    mlflow_call(registry.promote, name, "2", alias="champion", tracking_uri=mlflow_server)
    event = {
        "entity": "model_version_alias",
        "action": "created",
        "data": {"name": name, "alias": "champion", "version": "2"},
    }
    alias_changed = {"type": "alias_changed", "model": name, "alias": "champion"}
    with published(redis_backend, keys.events) as events:
        now = str(int(time.time()))
        for secret, ts in [("wrong-secret", now), (SECRET, str(int(time.time()) - 3600))]:
            r = deliver(a, event, secret, ts)
            assert r.status_code == 401
            assert r.json()["error"]["code"] == "unauthorized"
        assert {ask(r).headers["x-model-version"] for r in (a, b) for _ in range(4)} == {"1"}
        assert deliver(a, event, SECRET, str(int(time.time()))).status_code == 202
        took = wait_for_version([a, b], "2")
        wait_until(lambda: alias_changed in events(), 5, "the valid delivery's event")
        # An accepted delivery tells every worker over the channel before any refresh, so one
        # of the refused deliveries would have been heard before the valid one: none was.
        heard = events()
    assert heard[0] == alias_changed, heard
    assert heard.count(alias_changed) == 1, heard
    print(
        f"\npush path (signed delivery → pub/sub): all workers of both replicas on v2 "
        f"{took:.2f}s after the delivery"
    )
    settled_on([a, b], "2", [1], purged="1", cluster=redis_backend, keys=keys, name=name)

    # Through MLflow's own webhook this time; rolling back is just another promotion.
    hook = mlflow_call(
        registry.register_webhook,
        f"{a.url}/v1/webhooks/mlflow",
        SECRET,
        tracking_uri=mlflow_server,
        name=f"hook-{name}",
    )
    try:
        time.sleep(1.5)  # MLflow caches its webhook list (MLFLOW_WEBHOOK_CACHE_TTL=1 here)
        for _ in range(3):
            ask(a, HOT)
        start = time.monotonic()
        mlflow_call(registry.promote, name, "1", alias="champion", tracking_uri=mlflow_server)
        call = time.monotonic() - start
        took = wait_for_version([a, b], "1")
        print(
            f"push path (MLflow webhook → pub/sub): all workers on v1 {took:.2f}s after the "
            f"alias call returned (the call took {call:.2f}s)"
        )
        settled_on([a, b], "1", [0], purged="2", cluster=redis_backend, keys=keys, name=name)
    finally:
        mlflow_call(registry.client(mlflow_server).delete_webhook, hook)


def settled_on(
    on: list[Replica],
    version: str,
    predictions: list[int],
    *,
    purged: str,
    cluster: RedisBackend,
    keys: KeySpace,
    name: str,
) -> None:
    """After a switch to ``version``: every replica answers PROBE with ``predictions`` and the
    hot row as a HIT (warmed: computed on ``version`` before the swap), and the purge, which runs
    in the background, removes every key of the replaced version."""
    for replica in on:
        assert ask(replica).json() == {"predictions": predictions}
        hot = ask(replica, HOT)
        assert (hot.headers["x-model-version"], hot.headers["x-cache"]) == (version, "HIT")
    wait_until(
        lambda: version_keys(cluster, keys, name, purged) == [],
        10,
        f"every key of version {purged} purged",
    )


def test_poll_path_alone_converges(
    mlflow_server: str,
    iris_v1_v2: str,
    sentinel_cluster: SentinelCluster,
    replicas: ReplicaFactory,
    tmp_path: Path,
) -> None:
    name = iris_v1_v2
    env = env_for(name, mlflow_server, sentinel_cluster, tmp_path / "cache")
    env.update(MEMOSERVE_EVENTS_ENABLED="false", MEMOSERVE_MODEL_POLL_SECONDS="1")
    a, b = replicas(**env), replicas(**env)
    assert ask(a).headers["x-model-version"] == "1"
    mlflow_call(registry.promote, name, "2", alias="champion", tracking_uri=mlflow_server)
    took = wait_for_version([a, b], "2")
    print(f"\npoll path (1 s interval): all replicas on v2 {took:.2f}s after the alias moved")


def test_a_replica_never_goes_back_while_its_workers_switch_at_different_times(
    mlflow_server: str,
    iris_v1_v2: str,
    sentinel_cluster: SentinelCluster,
    replicas: ReplicaFactory,
    tmp_path: Path,
) -> None:
    """No webhook: each worker's jittered poll finds v2 at its own time, up to a second apart.
    The first to swap announces it, and the others wait for their own load rather than answer
    with v1 (without that fence this test sees a replica answer v2, then v1)."""
    name = iris_v1_v2
    env = env_for(name, mlflow_server, sentinel_cluster, tmp_path / "cache")
    env.update(MEMOSERVE_WORKERS="4", MEMOSERVE_MODEL_POLL_SECONDS="2")
    replica = replicas(**env)
    assert ask(replica).headers["x-model-version"] == "1"
    mlflow_call(registry.promote, name, "2", alias="champion", tracking_uri=mlflow_server)
    took = wait_for_version([replica], "2")
    for _ in range(40):  # and it stays there, whichever worker answers
        assert ask(replica).headers["x-model-version"] == "2"
    print(f"\npoll path, 4 workers: the replica answered v2 {took:.2f}s after the alias moved")


def test_mlflow_down_running_replicas_serve_and_restarts_use_the_local_copy(
    sentinel_cluster: SentinelCluster, replicas: ReplicaFactory, tmp_path: Path
) -> None:
    own: Proc = start_mlflow(tmp_path / "mlflow")
    tracking = f"http://{LOOPBACK}:{own.port}"
    try:
        name = register_v1_v2(tracking)
        env = env_for(name, tracking, sentinel_cluster, tmp_path / "cache")
        env["MEMOSERVE_MODEL_POLL_SECONDS"] = "1"
        running = replicas(**env)
        assert ask(running).headers["x-model-version"] == "1"
    finally:
        own.stop()
    with httpx.Client(base_url=running.url) as c:
        # Polls are counted as they end: the second from now ran all of it with MLflow down.
        polls = metric(c, "memoserve_model_polls_total")
        wait_until(
            lambda: metric(c, "memoserve_model_polls_total") >= polls + 2,
            30,
            "a poll with MLflow down",
        )
    for rows in (PROBE, [[7.0, 3.2, 4.7, 1.4]]):
        assert ask(running, rows).headers["x-model-version"] == "1"
    restarted = replicas(**env)  # same cache dir, as an emptyDir survives a container restart
    r = ask(restarted, [[6.3, 3.3, 6.0, 2.5]])
    assert r.headers["x-model-version"] == "1"
    assert r.json() == {"predictions": [2]}


def test_the_simulated_heavy_model_is_served_as_pyfunc_and_cached(
    mlflow_server: str,
    sentinel_cluster: SentinelCluster,
    replicas: ReplicaFactory,
    tmp_path: Path,
) -> None:
    name = f"slow-{uuid.uuid4().hex[:6]}"
    mlflow_call(
        registry.register,
        "slow",
        name,
        tracking_uri=mlflow_server,
        alias="champion",
        delay_seconds=0.3,
        n_estimators=10,
    )
    env = env_for(name, mlflow_server, sentinel_cluster, tmp_path / "cache")
    replica = replicas(**env, MEMOSERVE_MODEL_TRUST="pickle")  # a pyfunc is code
    meta = httpx.get(f"{replica.url}/v1/models/{name}").json()
    assert meta["outputs"] == ["predict"]  # a pyfunc offers predict only
    first, second = ask(replica), ask(replica)
    assert (first.headers["x-cache"], second.headers["x-cache"]) == ("MISS", "HIT")
    assert first.json() == second.json() == {"predictions": [0]}


def test_control_messages_need_the_key_coalesce_and_are_not_replayed(
    mlflow_server: str,
    sentinel_cluster: SentinelCluster,
    replicas: ReplicaFactory,
    tmp_path: Path,
) -> None:
    """Two replicas (two workers, one) on one registered version, the channel open to the test as
    to anyone who can PUBLISH. Forged events change nothing; signed ones make every worker look
    (a burst of them: at most two alias reads per worker); a replayed delivery, to either
    replica, triggers nothing; ``no-store`` rows are not sampled and hot sets expire."""
    name = f"iris-{uuid.uuid4().hex[:6]}"
    mlflow_call(
        registry.register,
        "iris",
        name,
        tracking_uri=mlflow_server,
        alias="champion",
        n_estimators=10,
    )
    keys = replicas.keys
    env = env_for(name, mlflow_server, sentinel_cluster, tmp_path / "cache")
    env.update(MEMOSERVE_HOT_SAMPLE_RATE="1")
    # Started together (their start-up is most of this test's time); b has one worker.
    workers = [2, 1]
    a, b = (replicas(wait_ready=False, **{**env, "MEMOSERVE_WORKERS": str(n)}) for n in workers)
    for replica in (a, b):
        wait_until(lambda r=replica: ready(r), 60, "the replica ready", proc=replica.proc)
    clients = [httpx.Client(base_url=r.url, timeout=10) for r in (a, b)]
    master = redis.Redis(LOOPBACK, sentinel_cluster.current_master_port(), socket_timeout=2)

    def reads() -> list[float]:
        return [metric(c, "memoserve_model_refreshes_total") for c in clients]

    def counted(metric_name: str, **labels: str) -> list[float]:
        return [metric(c, metric_name, **labels) for c in clients]

    def publish(*messages: bytes) -> None:
        with master.pipeline(transaction=False) as pipe:
            for m in messages:
                pipe.publish(keys.events, m)
            pipe.execute()

    try:
        # A replica is ready once one worker is: counters move until every worker has loaded.
        wait_until(
            lambda: counted("memoserve_model_reloads_total", outcome="ok") == workers,
            30,
            "every worker loaded",
        )
        # 1. Forged events, every kind that would make a worker look, fence or reload.
        before, rejected = reads(), counted("memoserve_events_rejected_total")
        reloads = counted("memoserve_model_reloads_total")
        forged_events = [
            {"type": "alias_changed", "model": name, "alias": "champion", "version": "2"},
            {"type": "loading", "model": name, "version": "2"},
            {"type": "serving", "model": name, "version": "2"},
            {"type": "resubscribed"},
        ]
        publish(*(forged(e) for e in forged_events))
        publish(*(signed(e, "not-the-secret") for e in forged_events))
        wait_until(
            lambda: all(
                r >= 2 * len(forged_events) * w or n > 0
                for r, n, w in zip(
                    grown(counted("memoserve_events_rejected_total"), rejected),
                    grown(reads(), before),
                    workers,
                    strict=True,
                )
            ),
            10,
            "every worker to hear the forged events",
        )
        for replica in (a, b):  # a fenced worker would re-read the alias now
            assert {ask(replica).headers["x-model-version"] for _ in range(8)} == {"1"}
        assert reads() == before, "a forged event made a worker read the alias"
        assert counted("memoserve_model_reloads_total") == reloads

        # 2. One signed event: every worker of both replicas reads the alias, once.
        publish(signed({"type": "alias_changed", "model": name}, SECRET))
        wait_until(
            lambda: all(n >= w for n, w in zip(grown(reads(), before), workers, strict=True)),
            10,
            "every worker to look",
        )
        # 3. A burst of 100: each worker reads one or two more times, not 100.
        before, joined = reads(), counted("memoserve_refreshes_coalesced_total")
        publish(*[signed({"type": "alias_changed", "model": name}, SECRET)] * 100)
        wait_until(
            lambda: all(
                n + j >= 100 * w
                for n, j, w in zip(
                    grown(reads(), before),
                    grown(counted("memoserve_refreshes_coalesced_total"), joined),
                    workers,
                    strict=True,
                )
            ),
            20,
            "every worker to take the burst",
        )
        burst = grown(reads(), before)
        assert all(w <= n <= 2 * w for n, w in zip(burst, workers, strict=True)), burst

        # 4. A delivery replayed (same id, valid signature) to the same and another replica.
        payload = alias_moved_payload(name)
        ts, delivery = str(int(time.time())), uuid.uuid4().hex
        with published(sentinel_cluster, keys.events) as events:
            assert deliver_as(a, payload, ts, delivery).status_code == 202
            for replica in (a, b):
                r = deliver_as(replica, payload, ts, delivery)
                assert r.status_code == 200, r.text
                assert r.json()["status"].startswith("ignored: duplicate delivery")
            publish(forged({"type": "marker"}))  # the channel keeps the order: all heard by then
            wait_until(lambda: {"type": "marker"} in events(), 5, "the marker")
            changes = [e for e in events() if e.get("type") == "alias_changed"]
        assert len(changes) == 1, changes
        assert counted("memoserve_webhook_duplicates_total") == [1, 1]

        # 5. Privacy: a no-store row leaves no hot-set entry; the hot set expires.
        hot = keys.hot(name, "1", "predict")
        with httpx.Client(base_url=a.url, timeout=10) as one:  # one connection: one worker
            secret_row, public_row = [[4.9, 3.1, 1.5, 0.1]], [[5.8, 2.7, 5.1, 1.9]]
            r = one.post(
                "/invocations",
                json=dataframe_split(secret_row),
                headers={"Cache-Control": "no-store"},
            )
            assert r.status_code == 200, r.text
            assert one.post("/invocations", json=dataframe_split(public_row)).status_code == 200
        wait_until(
            lambda: master.zscore(hot, orjson.dumps(public_row[0])) is not None,
            5,
            "the sampled row",
        )
        assert master.zscore(hot, orjson.dumps(secret_row[0])) is None, "no-store row sampled"
        assert 0 < master.ttl(hot) <= HOT_TTL_SECONDS
    finally:
        master.close()
        for c in clients:
            c.close()


def ready(replica: Replica) -> bool:
    try:
        return httpx.get(f"{replica.url}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def grown(now: list[float], then: list[float]) -> list[float]:
    """Per replica, how much a counter grew."""
    return [n - t for n, t in zip(now, then, strict=True)]


def alias_moved_payload(name: str) -> dict[str, Any]:
    return {
        "entity": "model_version_alias",
        "action": "created",
        "data": {"name": name, "alias": "champion", "version": "1"},
    }


def deliver_as(replica: Replica, payload: dict[str, Any], ts: str, delivery: str) -> httpx.Response:
    """A delivery with a given id: the same call twice is a replay."""
    return signed_delivery(replica.url, payload, SECRET, ts, delivery=delivery)
