"""Promotion against a real `mlflow server`: push and poll paths, purge, warm-up, MLflow down."""

from __future__ import annotations

import threading
import time
import uuid
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from devtools.localstack.processes import (
    LOOPBACK,
    Proc,
    Replica,
    SentinelCluster,
    start_mlflow,
    wait_until,
)
from memoserve_models import registry
from service.cache.keys import KeySpace
from tests.integration.conftest import ReplicaFactory
from tests.support.keys import published, version_keys
from tests.support.metrics import metric
from tests.support.payloads import dataframe_split
from tests.support.webhooks import deliver as signed_delivery

pytestmark = pytest.mark.integration
T = TypeVar("T")

SECRET = "integration-test-secret"
PROBE = [[5.1, 3.5, 1.4, 0.2]]  # v1 says 0; v2 (classes rotated) says 1
HOT = [[6.7, 3.0, 5.2, 2.3]]


def mlflow_call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Set-up through MLflow's client, whose own deprecation and type-hint warnings are not
    what these tests check (pytest turns warnings into errors)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def register_v1_v2(tracking: str) -> str:
    """A fresh model name with v1@champion and an unaliased v2 whose answers differ."""
    name = f"iris-{uuid.uuid4().hex[:6]}"
    mlflow_call(
        registry.register, "iris", name, tracking_uri=tracking, alias="champion", n_estimators=10
    )
    mlflow_call(
        registry.register, "iris", name, tracking_uri=tracking, label_shift=1, n_estimators=10
    )
    return name


def ask(replica: Replica, rows: list[list[float]] = PROBE) -> httpx.Response:
    r = httpx.post(f"{replica.url}/invocations", json=dataframe_split(rows), timeout=10)
    assert r.status_code == 200, r.text
    return r


def wait_for_version(
    replicas: list[Replica], version: str, timeout: float = 30, *, callers: int = 4
) -> float:
    """Seconds until every replica answers ``version``, asked by ``callers`` concurrent
    clients per replica (so that every worker gets requests), and then for one more second.

    Checked on every answer: no request a replica received after it had answered ``version``
    is answered with another version."""
    start = time.monotonic()
    first: dict[int, float] = {}  # replica -> when its first answer of `version` arrived
    answers: list[tuple[int, float, str]] = []  # (replica, sent at, version)
    lock = threading.Lock()

    def call(i: int) -> None:
        while True:
            now = time.monotonic()
            with lock:
                done = len(first) == len(replicas) and now > max(first.values()) + 1.0
            if done or now - start > timeout:
                return
            seen = ask(replicas[i]).headers["x-model-version"]
            with lock:
                answers.append((i, now, seen))
                if seen == version and i not in first:
                    first[i] = time.monotonic()
            time.sleep(0.005)

    threads = [
        threading.Thread(target=call, args=(i,))
        for i in range(len(replicas))
        for _ in range(callers)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(first) == len(replicas), f"not all replicas on {version} after {timeout}s"
    back = [(i, seen) for i, sent, seen in answers if sent > first[i] and seen != version]
    assert not back, f"replicas went back from {version} after answering it: {back[:5]}"
    return max(first.values()) - start


def env_for(name: str, tracking: str, cluster: SentinelCluster, cache: Path) -> dict[str, str]:
    return {
        "MEMOSERVE_MODEL_URI": f"models:/{name}@champion",
        "MEMOSERVE_MLFLOW_TRACKING_URI": tracking,
        "MEMOSERVE_REDIS_SENTINELS": cluster.sentinel_addresses,
        "MEMOSERVE_WEBHOOK_SECRET": SECRET,
        "MEMOSERVE_MODEL_CACHE_DIR": str(cache),
        "MEMOSERVE_WORKERS": "1",  # a replica here is one worker: "never v1 again" is per process
    }


def deliver(replica: Replica, payload: dict[str, Any], secret: str, ts: str) -> httpx.Response:
    """A webhook delivery as MLflow signs it."""
    return signed_delivery(replica.url, payload, secret, ts)


def test_push_path_switches_every_replica_purges_and_warms(
    mlflow_server: str,
    sentinel_cluster: SentinelCluster,
    replicas: ReplicaFactory,
    tmp_path: Path,
) -> None:
    name = register_v1_v2(mlflow_server)
    keys = replicas.keys
    env = env_for(name, mlflow_server, sentinel_cluster, tmp_path / "cache")
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
    alias_changed = {"type": "alias_changed", "model": name, "alias": "champion", "version": "2"}
    with published(sentinel_cluster, keys.events) as events:
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
    settled_on([a, b], "2", [1], purged="1", cluster=sentinel_cluster, keys=keys, name=name)

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
        settled_on([a, b], "1", [0], purged="2", cluster=sentinel_cluster, keys=keys, name=name)
    finally:
        mlflow_call(registry.client(mlflow_server).delete_webhook, hook)


def settled_on(
    on: list[Replica],
    version: str,
    predictions: list[int],
    *,
    purged: str,
    cluster: SentinelCluster,
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
    sentinel_cluster: SentinelCluster,
    replicas: ReplicaFactory,
    tmp_path: Path,
) -> None:
    name = register_v1_v2(mlflow_server)
    env = env_for(name, mlflow_server, sentinel_cluster, tmp_path / "cache")
    env.update(MEMOSERVE_EVENTS_ENABLED="false", MEMOSERVE_MODEL_POLL_SECONDS="1")
    a, b = replicas(**env), replicas(**env)
    assert ask(a).headers["x-model-version"] == "1"
    mlflow_call(registry.promote, name, "2", alias="champion", tracking_uri=mlflow_server)
    took = wait_for_version([a, b], "2")
    print(f"\npoll path (1 s interval): all replicas on v2 {took:.2f}s after the alias moved")


def test_a_replica_never_goes_back_while_its_workers_switch_at_different_times(
    mlflow_server: str,
    sentinel_cluster: SentinelCluster,
    replicas: ReplicaFactory,
    tmp_path: Path,
) -> None:
    """No webhook: each worker's jittered poll finds v2 at its own time, up to a second apart.
    The first to swap announces it, and the others wait for their own load rather than answer
    with v1 (without that fence this test sees a replica answer v2, then v1)."""
    name = register_v1_v2(mlflow_server)
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
