"""RedisCache's breaker wiring: how each way a round trip can end reaches the breaker."""

from __future__ import annotations

import asyncio
from typing import cast

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import SlotNotCoveredError

from service.cache.breaker import BreakerState, CircuitBreaker
from service.cache.redis import Client, RedisCache
from service.errors import CacheUnavailable


async def test_a_cancelled_half_open_probe_does_not_wedge_the_breaker() -> None:
    breaker = CircuitBreaker(1, 0.0)
    # The operations below never touch the client: this checks the wiring, not Redis.
    cache = RedisCache(cast(Redis, object()), breaker, deadline_seconds=5)

    async def down(_r: Redis) -> None:
        raise RedisConnectionError("down")

    async def hang(_r: Redis) -> None:
        await asyncio.sleep(60)

    async def ok(_r: Redis) -> int:
        return 1

    with pytest.raises(CacheUnavailable):
        await cache.run(down)
    assert breaker.state is BreakerState.OPEN
    probe = asyncio.create_task(cache.run(hang))  # the half-open probe, then cancelled
    await asyncio.sleep(0)
    assert breaker.state is BreakerState.HALF_OPEN
    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe
    assert await cache.run(ok) == 1  # the next call is let through as a new probe
    assert breaker.state is BreakerState.CLOSED


async def test_a_cluster_without_a_slot_map_is_a_redis_failure_not_a_crash() -> None:
    # redis-py's cluster errors (no node reachable, a slot not covered) are no RedisErrors.
    breaker = CircuitBreaker(1, 60.0)
    cache = RedisCache(cast(Redis, object()), breaker, deadline_seconds=5)

    async def no_slots(_r: Client) -> None:
        raise SlotNotCoveredError("slot 42 is not covered")

    with pytest.raises(CacheUnavailable, match="SlotNotCoveredError"):
        await cache.run(no_slots)
    assert breaker.state is BreakerState.OPEN
