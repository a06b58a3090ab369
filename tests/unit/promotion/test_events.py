"""EventBus over a real redis-server: a published event reaches the handler; a malformed one
or a failing handler does not stop the listener."""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio import Redis

from devtools.localstack.faults import FaultProxy
from devtools.localstack.processes import LOOPBACK, Proc
from service.cache.breaker import CircuitBreaker
from service.cache.keys import KeySpace
from service.cache.redis import RedisCache
from service.promotion.events import EventBus
from tests.support.waiting import eventually


async def test_published_events_reach_the_handler_and_bad_ones_are_survived(
    redis_cache: RedisCache, keys: KeySpace
) -> None:
    bus = EventBus(redis_cache, keys.events)
    seen: list[dict[str, Any]] = []
    arrived = asyncio.Event()

    async def handler(event: dict[str, Any]) -> None:
        if event.get("fail"):
            raise RuntimeError("handler bug")
        seen.append(event)
        arrived.set()

    bus.start(handler)
    try:
        await asyncio.wait_for(bus.subscribed.wait(), 5)
        await redis_cache.run(lambda r: r.publish(keys.events, b"not json"))
        assert await bus.publish({"fail": True})
        assert await bus.publish({"type": "serving", "version": "2"})
        await asyncio.wait_for(arrived.wait(), 5)
    finally:
        await bus.stop()
    assert seen == [{"type": "serving", "version": "2"}]


async def test_a_silently_dead_subscription_is_noticed_and_replaced(
    redis_server: Proc, redis_cache: RedisCache, keys: KeySpace
) -> None:
    """The proxy holds every byte of the subscription's connection and never closes it."""
    proxy = FaultProxy(LOOPBACK, redis_server.port).start()
    client = Redis(host=LOOPBACK, port=proxy.port, socket_timeout=2)
    bus = EventBus(
        RedisCache(client, CircuitBreaker(1000, 1.0), deadline_seconds=2.0),
        keys.events,
        keepalive_seconds=0.1,
    )
    seen: list[dict[str, Any]] = []
    bus.start(lambda event: _append(seen, event))
    try:
        await asyncio.wait_for(bus.subscribed.wait(), 5)
        assert proxy.stall_live() == 1
        await eventually(lambda: {"type": "resubscribed"} in seen, 5, "a new subscription")
        assert await redis_cache.run(lambda r: r.publish(keys.events, b'{"type": "serving"}'))
        await eventually(lambda: {"type": "serving"} in seen, 5, "an event on the new one")
    finally:
        await bus.stop()
        await client.aclose()
        proxy.stop()


async def _append(seen: list[dict[str, Any]], event: dict[str, Any]) -> None:
    seen.append(event)
