"""DeliveryLog over a real redis-server: a delivery id is handled once across replicas, and
once per process while Redis is down."""

from __future__ import annotations

import time

from redis.asyncio import Redis

from devtools.localstack.processes import LOOPBACK, free_port
from service.cache.breaker import CircuitBreaker
from service.cache.keys import KeySpace
from service.cache.redis import RedisCache
from service.promotion.deliveries import DeliveryLog


async def test_a_delivery_id_is_first_seen_once_on_any_replica(
    redis_cache: RedisCache, keys: KeySpace
) -> None:
    here, there = (DeliveryLog(redis_cache, keys, tolerance_seconds=60) for _ in range(2))
    now = time.time()
    assert await here.first_time("a", int(now), now)
    assert not await here.first_time("a", int(now), now)
    assert not await there.first_time("a", int(now), now), "another replica took the replay"
    assert await there.first_time("b", int(now), now)
    # Remembered until the delivery's timestamp leaves the window, and not much longer.
    ttl = await redis_cache.run(lambda r: r.ttl(keys.delivery("a")))
    assert 55 <= ttl <= 61


async def test_without_redis_this_process_remembers(keys: KeySpace) -> None:
    client = Redis(host=LOOPBACK, port=free_port(), socket_timeout=0.2)  # nothing listens
    down = RedisCache(client, CircuitBreaker(1, 60.0), deadline_seconds=0.5)
    log = DeliveryLog(down, keys, tolerance_seconds=60)
    now = time.time()
    try:
        assert await log.first_time("a", int(now), now)
        assert not await log.first_time("a", int(now), now)
        assert await log.first_time("b", int(now), now)
    finally:
        await down.close()
    no_redis = DeliveryLog(None, keys, tolerance_seconds=60)
    assert await no_redis.first_time("a", int(now), now)
    assert not await no_redis.first_time("a", int(now), now)
