"""SwapHooks over a real redis-server: a swap publishes the new version, forgets the old one's
near-cache entries, purges its keys, and announces itself to sibling workers first."""

from __future__ import annotations

import asyncio
from typing import Any

from service.background import BackgroundTasks
from service.cache.keys import KeySpace
from service.cache.memory import MemoryCache
from service.cache.redis import RedisCache
from service.cache.tiered import TieredCache
from service.promotion.events import EventBus
from service.promotion.hooks import SwapHooks
from service.settings import Settings
from tests.support.events import KEY
from tests.support.sources import MovableAlias
from tests.support.waiting import eventually


def hooks(redis: RedisCache, keys: KeySpace, l1: MemoryCache, bus: EventBus | None) -> SwapHooks:
    cache = TieredCache(redis, l1, BackgroundTasks("t"), ttl_seconds=60)
    settings = Settings(namespace=keys.namespace, model_poll_seconds=0, warmup_top_k=0)
    return SwapHooks(settings, keys, cache, redis=redis, bus=bus, hot=None, registry_name="m")


async def test_retire_publishes_the_new_version_forgets_and_purges_the_old(
    redis_cache: RedisCache, keys: KeySpace
) -> None:
    source = MovableAlias("1")
    old, new = source.load("1"), source.load("2")
    l1 = MemoryCache(10, layer="l1")
    old_row = keys.row_prefix("m", "1", "predict") + "a" * 32
    new_row = keys.row_prefix("m", "2", "predict") + "a" * 32
    l1.set_many_now([(old_row, b"1"), (new_row, b"2")], 60)
    await redis_cache.set_many([(old_row, b"1"), (new_row, b"2")], 60)
    swap = hooks(redis_cache, keys, l1, None)

    await swap.retire(old, new)
    assert await redis_cache.run(lambda r: r.get(keys.active("m"))) == b"2"
    assert 0 < await redis_cache.run(lambda r: r.ttl(keys.active("m"))) <= 3600
    assert l1.get_many_now([old_row, new_row]) == [None, b"2"]

    async def purged() -> bool:  # the purge runs in the background
        return await redis_cache.get_many([old_row]) == [None]

    await eventually(purged, 5, "the old version's row purged")
    assert await redis_cache.get_many([new_row]) == [b"2"]
    await swap.stop()  # the delayed sweep is cancelled, not left running


async def test_announce_tells_siblings_before_a_version_change_only(
    redis_cache: RedisCache, keys: KeySpace
) -> None:
    source = MovableAlias("1")
    one, two = source.load("1"), source.load("2")
    heard: list[dict[str, Any]] = []
    sibling = EventBus(redis_cache, keys.events, key=KEY)

    async def listen(event: dict[str, Any]) -> None:
        heard.append(event)

    sibling.start(listen)
    try:
        await asyncio.wait_for(sibling.subscribed.wait(), 5)
        bus = EventBus(redis_cache, keys.events, key=KEY)
        swap = hooks(redis_cache, keys, MemoryCache(10), bus)
        await swap.announce(None, one)  # the first load: nobody to fence
        await swap.announce(one, one)  # a refresh that found the same version
        await swap.announce(one, two)
        await eventually(lambda: len(heard) >= 1, 5, "the first announcement")
        await swap.announce(two, one)  # a rollback is announced too
        await eventually(lambda: len(heard) >= 2, 5, "the second announcement")
        await swap.announce_load(None, "1")  # start-up: nobody to wake
        await swap.announce_load(one, "1")
        await swap.announce_load(one, "2")  # siblings load it now, not after the fence
        await eventually(lambda: len(heard) >= 3, 5, "the load announcement")
    finally:
        await sibling.stop()
    assert heard == [
        {"type": "serving", "model": "m", "version": "2"},
        {"type": "serving", "model": "m", "version": "1"},
        {"type": "loading", "model": "m", "version": "2"},
    ]
