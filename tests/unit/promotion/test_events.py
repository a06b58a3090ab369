"""EventBus over a real redis-server: a published event reaches the handler; a malformed one
or a failing handler does not stop the listener."""

from __future__ import annotations

import asyncio
from typing import Any

from service.cache.keys import KeySpace
from service.cache.redis import RedisCache
from service.promotion.events import EventBus


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
