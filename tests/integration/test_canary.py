"""Canary and shadow arms against a real `mlflow server`, Redis Sentinel and gunicorn: the
sticky 10 % split, each version's own entries, shadow agreement, and both aliases moving."""

from __future__ import annotations

import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from devtools.localstack.processes import Replica, SentinelCluster, wait_until
from memoserve_models import registry
from tests.integration.conftest import ReplicaFactory
from tests.support.keys import row_entries, version_keys
from tests.support.metrics import metric
from tests.support.payloads import dataframe_split
from tests.support.registry import PROBE, mlflow_call
from tests.support.webhooks import alias_moved, deliver

pytestmark = pytest.mark.integration

SECRET = "canary-test-secret"
KEYS = 2000
ROWS = 200  # distinct rows: the keys share them, so most requests are hits and the test quick


def row(i: int) -> list[list[float]]:
    """One of ROWS iris-like rows (each a miss once per version, which the shadow copies)."""
    i %= ROWS
    return [[4.5 + (i % 20) * 0.15, 2.5 + (i // 20) * 0.1, 1.0 + (i % 7) * 0.8, 0.3]]


def ask_all(url: str, keys: list[str], rows: list[list[list[float]]]) -> list[httpx.Response]:
    """``routed`` for every key, by four clients at once."""

    def part(start: int) -> list[httpx.Response]:
        with httpx.Client(base_url=url, timeout=10) as client:
            return [routed(client, keys[i], rows[i]) for i in range(start, len(keys), 4)]

    with ThreadPoolExecutor(4) as pool:
        parts = list(pool.map(part, range(4)))
    answers: list[httpx.Response] = [None] * len(keys)  # type: ignore[list-item]
    for start, answered in enumerate(parts):
        answers[start::4] = answered
    return answers


def routed(client: httpx.Client, key: str, rows: list[list[float]]) -> httpx.Response:
    r = client.post(
        "/invocations", json=dataframe_split(rows), headers={"X-Memoserve-Route-Key": key}
    )
    assert r.status_code == 200, r.text
    return r


def pinned(replica: Replica, version: str) -> tuple[int, str]:
    r = httpx.post(f"{replica.url}/invocations?version={version}", json=dataframe_split(PROBE))
    return r.status_code, r.headers.get("x-model-arm", "")


def test_a_canary_gets_its_share_sticks_and_is_promoted_warm(
    mlflow_server: str,
    iris_v1_v2: str,
    sentinel_cluster: SentinelCluster,
    replicas: ReplicaFactory,
    tmp_path: Path,
) -> None:
    name, keys = iris_v1_v2, replicas.keys
    mlflow = registry.client(mlflow_server)
    for alias in ("challenger", "shadow"):
        mlflow_call(registry.promote, name, "2", alias=alias, tracking_uri=mlflow_server)
    env = {
        "MEMOSERVE_MODEL_URI": f"models:/{name}@champion",
        "MEMOSERVE_MLFLOW_TRACKING_URI": mlflow_server,
        "MEMOSERVE_REDIS_SENTINELS": sentinel_cluster.sentinel_addresses,
        "MEMOSERVE_WEBHOOK_SECRET": SECRET,
        "MEMOSERVE_MODEL_CACHE_DIR": str(tmp_path / "cache"),
        "MEMOSERVE_WORKERS": "1",
        "MEMOSERVE_MODEL_CANARY_ALIAS": "challenger",
        "MEMOSERVE_MODEL_CANARY_PERCENT": "10",
        "MEMOSERVE_MODEL_SHADOW_ALIAS": "shadow",
        "MEMOSERVE_ACCESS_LOG": "false",
    }
    try:
        began = time.monotonic()
        a, b = replicas(wait_ready=False, **env), replicas(wait_ready=False, **env)
        for replica in (a, b):  # ready is the champion loaded; the canary may still load
            wait_until(lambda r=replica: pinned(r, "2") == (200, "canary"), 60, "the canary")
        print(f"\ntwo replicas with three arms each up in {time.monotonic() - began:.1f}s")
        client = httpx.Client(base_url=a.url, timeout=10)

        start = time.monotonic()
        users = [f"user-{i}" for i in range(KEYS)]
        arm_of: dict[str, str] = {}
        for key, r in zip(users, ask_all(a.url, users, [row(i) for i in range(KEYS)]), strict=True):
            arm, version = r.headers["x-model-arm"], r.headers["x-model-version"]
            assert (arm, version) in {("champion", "1"), ("canary", "2")}, (arm, version)
            arm_of[key] = arm
        took = time.monotonic() - start
        share = Counter(arm_of.values())["canary"] / KEYS
        assert 0.07 <= share <= 0.13, share
        # Sticky on any replica: every key asked again, of b and with another row: same arm.
        again = ask_all(b.url, users, [PROBE] * KEYS)
        moved = [
            k for k, r in zip(users, again, strict=True) if r.headers["x-model-arm"] != arm_of[k]
        ]
        assert not moved, moved[:5]
        canaried = [k for k, arm in arm_of.items() if arm == "canary"]
        print(
            f"canary at 10 %: {share:.1%} of {KEYS} routing keys on the canary "
            f"({KEYS} requests in {took:.1f}s); every key asked again got its arm"
        )

        # Each version has its own entries, written by its own arm (and PROBE, asked of both).
        v1, v2 = (len(row_entries(sentinel_cluster, keys, name, v)) for v in "12")
        assert v1 == ROWS + 1 and 0 < v2 < ROWS, (v1, v2)

        # The shadow (v2) copied the champion's misses; the two iris versions disagree.
        def compared() -> float:
            return sum(
                metric(
                    client,
                    "memoserve_shadow_rows_total",
                    serving_version="1",
                    shadow_version="2",
                    result=result,
                )
                for result in ("agree", "disagree")
            )

        # Each row the champion computed (ROWS of them, once) was offered to the shadow.
        wait_until(lambda: compared() >= 0.9 * ROWS, 20, "shadow copies")
        agree = metric(client, "memoserve_shadow_rows_total", serving_version="1", result="agree")
        dropped = metric(client, "memoserve_shadow_dropped_rows_total")
        print(
            f"shadow v2 behind champion v1: {compared():.0f} rows compared, "
            f"agreement {agree / compared():.1%}, {dropped:.0f} dropped"
        )

        print(f"until the promotion: {time.monotonic() - began:.1f}s")
        # The challenger is promoted: every replica's champion arm serves v2, from the entries
        # the canary wrote (same version, same keys), and v1's keys go.
        mlflow_call(registry.promote, name, "2", alias="champion", tracking_uri=mlflow_server)
        assert deliver(a.url, alias_moved(name, "2"), SECRET).status_code == 202
        for replica in (a, b):
            wait_until(lambda r=replica: pinned(r, "2") == (200, "champion"), 20, "champion v2")
        for key in canaried[:20]:
            i = int(key.removeprefix("user-"))
            r = routed(client, f"fresh-{i}", row(i))
            assert (r.headers["x-model-version"], r.headers["x-cache"]) == ("2", "HIT"), key
        wait_until(lambda: version_keys(sentinel_cluster, keys, name, "1") == [], 15, "v1 purged")

        # The challenger moves back to v1: the canary arm switches on both replicas, and v2's
        # keys stay (the champion serves it).
        v2_rows = len(row_entries(sentinel_cluster, keys, name, "2"))
        mlflow_call(registry.promote, name, "1", alias="challenger", tracking_uri=mlflow_server)
        assert deliver(b.url, alias_moved(name, "1", "challenger"), SECRET).status_code == 202
        for replica in (a, b):
            wait_until(lambda r=replica: pinned(r, "1") == (200, "canary"), 20, "canary v1")
        assert len(row_entries(sentinel_cluster, keys, name, "2")) >= v2_rows
        client.close()
        print(f"both aliases moved: {time.monotonic() - began:.1f}s in all")
    finally:
        for alias in ("challenger", "shadow"):
            mlflow_call(mlflow.delete_registered_model_alias, name, alias)
