"""Unit-level fixtures: one real ``redis-server`` for the parts that speak Redis, and one real
Redis Cluster (started only if a test asks) for those that must work on both."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from redis.asyncio import Redis

from devtools.localstack.processes import LOOPBACK, Proc, redis_available, start_redis
from devtools.localstack.redis_cluster import RedisClusterProcs
from service.cache.breaker import CircuitBreaker
from service.cache.cluster import ClusterCache, build_cluster
from service.cache.keys import KeySpace
from service.cache.redis import RedisCache
from service.settings import Settings


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    """A plain redis-server on a free loopback port, for the whole session."""
    if not redis_available():
        pytest.fail("redis-server is not installed: run `make test` (it installs it) as root")
    proc = start_redis("redis-unit", tmp_path_factory.mktemp("redis-unit"))
    yield proc
    proc.stop()


@pytest.fixture
def keys() -> KeySpace:
    """A namespace of this test's own."""
    return KeySpace(f"u{uuid.uuid4().hex[:8]}")


@pytest.fixture
async def redis_cache(redis_server: Proc) -> AsyncIterator[RedisCache]:
    """A RedisCache on the session's server, with a breaker that stays closed."""
    client = Redis(host=LOOPBACK, port=redis_server.port, socket_timeout=2)
    cache = RedisCache(client, CircuitBreaker(1000, 1.0), deadline_seconds=2.0)
    yield cache
    await cache.close()


@pytest.fixture(scope="session")
def redis_cluster(
    redis_server: Proc, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RedisClusterProcs]:
    """3 primaries + 3 replicas on loopback, for the whole session."""
    cluster = RedisClusterProcs(tmp_path_factory.mktemp("redis-cluster")).start()
    yield cluster
    cluster.stop()


@pytest.fixture(params=["single", "cluster"])
async def shared_redis(
    request: pytest.FixtureRequest, redis_cache: RedisCache
) -> AsyncIterator[RedisCache]:
    """The test once on a single Redis and once on the Redis Cluster."""
    if request.param == "single":
        yield redis_cache
        return
    cluster: RedisClusterProcs = request.getfixturevalue("redis_cluster")
    settings = Settings(redis_cluster_nodes=cluster.nodes, redis_socket_timeout_ms=2000)
    cache = ClusterCache(build_cluster(settings), CircuitBreaker(1000, 1.0), deadline_seconds=5.0)
    yield cache
    await cache.close()
