"""Unit-level fixtures: one real ``redis-server`` for the parts that speak Redis."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from redis.asyncio import Redis

from devtools.localstack.processes import LOOPBACK, Proc, redis_available, start_redis
from service.cache.breaker import CircuitBreaker
from service.cache.keys import KeySpace
from service.cache.redis import RedisCache


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
