"""A Redis Cluster primary killed under steady traffic: every answer stays 200 and hits resume
once the cluster has promoted that primary's replica (the Sentinel version is in
test_serving.py; this one loses one primary of three, so most rows keep hitting)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from devtools.localstack.processes import LOOPBACK, wait_until
from devtools.localstack.redis_cluster import RedisClusterProcs
from tests.integration.conftest import ReplicaFactory
from tests.support.failover import through_failover
from tests.support.keys import row_entries
from tests.support.payloads import dataframe_split as split

pytestmark = pytest.mark.integration


@pytest.fixture
def own_redis_cluster(require_redis: None, tmp_path: Path) -> Iterator[RedisClusterProcs]:
    """A cluster of this test's own: it kills a primary."""
    cluster = RedisClusterProcs(tmp_path / "redis-cluster").start()
    yield cluster
    cluster.stop()


def replicated(cluster: RedisClusterProcs) -> bool:
    """Whether the replicas hold as many keys as the primaries."""

    def size(port: int) -> int:
        with redis.Redis(LOOPBACK, port, socket_timeout=2) as r:
            return int(r.dbsize())

    primaries = set(cluster.primary_ports())
    on_primaries = sum(size(p) for p in primaries)
    on_replicas = sum(size(p.port) for p in cluster.procs if p.port not in primaries)
    return on_replicas >= on_primaries


def test_a_killed_primary_is_replaced_and_every_request_answered(
    own_redis_cluster: RedisClusterProcs, replicas: ReplicaFactory, iris_path: Path
) -> None:
    cluster = own_redis_cluster
    replica = replicas(
        MEMOSERVE_MODEL_URI=str(iris_path),
        MEMOSERVE_L1_ENABLED="false",
        MEMOSERVE_BREAKER_RESET_SECONDS="0.5",
        **cluster.client_env(),
    )
    rows = [[5.0 + i / 10, 3.0, 1.5, 0.2] for i in range(20)]
    with httpx.Client(base_url=replica.url, timeout=10) as c:
        for row in rows:
            assert c.post("/invocations", json=split([row])).status_code == 200
        wait_until(
            lambda: len(row_entries(cluster, replicas.keys, "iris")) == len(rows),
            10,
            "the rows written behind the answers",
        )
        wait_until(lambda: replicated(cluster), 10, "the rows on the replicas")
        victim = cluster.by_port(cluster.primary_ports()[0])
        run = through_failover(c, rows, victim.kill)
    assert set(run.statuses) == {200}, f"non-200 answers during failover: {set(run.statuses)}"
    assert run.resumed_at, f"hits did not resume; last outcomes {run.outcomes[-20:]}"
    after = cluster.primary_ports()
    assert victim.port not in after and len(after) == cluster.primaries
    assert len(row_entries(cluster, replicas.keys, "iris")) == len(rows)  # nothing was lost
    print(f"\ncluster failover: {run.summary()}")
