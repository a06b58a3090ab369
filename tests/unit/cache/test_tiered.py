"""TieredCache: L1 then the shared cache, per-row metrics, write-behind and fail-open."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from devtools.localstack.processes import LOOPBACK, free_port
from service.background import BackgroundTasks
from service.cache.breaker import CircuitBreaker
from service.cache.memory import MemoryCache
from service.cache.outcome import CacheOutcome
from service.cache.redis import RedisCache
from service.cache.tiered import TieredCache
from tests.support.metrics import cache_rows, sample


def tiered(shared: RedisCache | MemoryCache, l1: MemoryCache | None = None) -> TieredCache:
    return TieredCache(shared, l1, BackgroundTasks("t"), ttl_seconds=60)


@pytest.fixture
async def dead_redis() -> AsyncIterator[RedisCache]:
    """A RedisCache whose server is not there (nothing listens on the port)."""
    client = Redis(host=LOOPBACK, port=free_port(), socket_connect_timeout=0.2)
    cache = RedisCache(client, CircuitBreaker(1000, 1.0), deadline_seconds=1.0)
    yield cache
    await cache.close()


async def test_l1_then_redis_and_a_redis_hit_fills_l1(redis_cache: RedisCache) -> None:
    l1 = MemoryCache(10, layer="l1")
    cache = tiered(redis_cache, l1)
    await redis_cache.set_many([("t:a", b"1")], 60)
    l1.set_many_now([("t:b", b"2")], 60)
    before = {r: cache_rows(r, "redis") for r in ("hit", "miss")}, cache_rows("hit", "l1")

    lookup = await cache.lookup(["t:a", "t:b", "t:c"])
    assert lookup.values == [b"1", b"2", None]
    assert (lookup.hits, lookup.layer, lookup.missing) == (2, "redis", [2])
    assert lookup.outcome is CacheOutcome.PARTIAL
    assert cache_rows("hit", "l1") == before[1] + 1
    assert cache_rows("hit", "redis") == before[0]["hit"] + 1
    assert cache_rows("miss", "redis") == before[0]["miss"] + 1
    assert l1.get_many_now(["t:a"]) == [b"1"]  # the Redis hit is near now

    again = await cache.lookup(["t:a", "t:b"])
    assert (again.layer, again.outcome) == ("l1", CacheOutcome.HIT)


async def test_a_failed_shared_cache_is_a_bypass_not_an_error(dead_redis: RedisCache) -> None:
    l1 = MemoryCache(10, layer="l1")
    l1.set_many_now([("t:a", b"1")], 60)
    before = cache_rows("bypass", "redis")
    lookup = await tiered(dead_redis, l1).lookup(["t:a", "t:b"])
    assert lookup.values == [b"1", None]
    assert lookup.bypass and lookup.outcome is CacheOutcome.BYPASS
    assert cache_rows("bypass", "redis") == before + 1  # the row Redis could not answer


async def test_skip_counts_rows_as_skipped_and_the_request_as_a_miss() -> None:
    cache = tiered(MemoryCache(10))
    before = cache_rows("skipped", "memory")
    lookup = cache.skip(3)
    assert lookup.outcome is CacheOutcome.MISS and lookup.missing == [0, 1, 2]
    assert cache_rows("skipped", "memory") == before + 3


async def test_an_in_process_shared_cache_is_written_before_store_returns() -> None:
    shared = MemoryCache(10)
    released: list[list[str]] = []

    async def after(keys: list[str]) -> None:
        released.append(keys)

    await tiered(shared).store([("t:a", b"1")], after)
    assert shared.get_many_now(["t:a"]) == [b"1"]
    assert released == [["t:a"]]


async def test_redis_is_written_behind_then_after_runs(redis_cache: RedisCache) -> None:
    l1 = MemoryCache(10, layer="l1")
    cache = tiered(redis_cache, l1)
    released: list[list[str]] = []

    async def after(keys: list[str]) -> None:
        released.append(keys)

    await cache.store([("t:w", b"1")], after)
    assert l1.get_many_now(["t:w"]) == [b"1"]  # near at once
    await cache.drain()
    assert await redis_cache.get_many(["t:w"]) == [b"1"]
    assert 0 < await redis_cache.run(lambda r: r.ttl("t:w")) <= 60
    assert released == [["t:w"]]


async def test_a_failed_write_behind_is_counted(dead_redis: RedisCache) -> None:
    cache = tiered(dead_redis)
    before = cache_rows("bypass", "redis")
    errors = sample("memoserve_cache_write_errors_total")
    await cache.store([("t:x", b"1")])
    await cache.drain()
    assert sample("memoserve_cache_write_errors_total") == errors + 1
    assert cache_rows("bypass", "redis") == before


def test_forget_drops_one_versions_near_entries() -> None:
    l1 = MemoryCache(10, layer="l1")
    l1.set_many_now([("ns:row:m:1:predict:a", b"1"), ("ns:row:m:2:predict:a", b"2")], 60)
    assert tiered(MemoryCache(10), l1).forget("ns:row:m:1:") == 1
    assert l1.get_many_now(["ns:row:m:1:predict:a", "ns:row:m:2:predict:a"]) == [None, b"2"]
