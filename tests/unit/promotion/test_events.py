"""EventBus over a real redis-server: a published event reaches the handler; a malformed,
unsigned, badly signed or stale one is dropped and counted; a failing handler does not stop the
listener."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from redis.asyncio import Redis

from devtools.localstack.faults import FaultProxy
from devtools.localstack.processes import LOOPBACK, Proc
from service.cache.breaker import CircuitBreaker
from service.cache.keys import KeySpace
from service.cache.redis import RedisCache
from service.promotion.events import EventBus
from service.promotion.sealed import Rejected, events_key
from tests.support.events import KEY, forged, signed
from tests.support.metrics import sample
from tests.support.waiting import eventually


async def test_published_events_reach_the_handler_and_bad_ones_are_survived(
    shared_redis: RedisCache, keys: KeySpace
) -> None:
    bus = EventBus(shared_redis, keys.events, key=KEY)
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
        await shared_redis.run(lambda r: r.publish(keys.events, b"not json"))
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
        key=KEY,
        keepalive_seconds=0.1,
    )
    seen: list[dict[str, Any]] = []
    bus.start(lambda event: _append(seen, event))
    try:
        await asyncio.wait_for(bus.subscribed.wait(), 5)
        assert proxy.stall_live() == 1
        await eventually(lambda: {"type": "resubscribed"} in seen, 5, "a new subscription")
        message = signed({"type": "serving"}, "unit-test-secret")
        assert await redis_cache.run(lambda r: r.publish(keys.events, message))
        await eventually(lambda: {"type": "serving"} in seen, 5, "an event on the new one")
    finally:
        await bus.stop()
        await client.aclose()
        proxy.stop()


async def _append(seen: list[dict[str, Any]], event: dict[str, Any]) -> None:
    seen.append(event)


def rejected(reason: Rejected) -> float:
    return sample("memoserve_events_rejected_total", reason=reason.value)


async def test_only_events_signed_with_the_key_and_recent_reach_the_handler(
    redis_cache: RedisCache, keys: KeySpace
) -> None:
    """What anyone who can PUBLISH could send; a signed event after them shows the listener
    was there to hear them (the channel keeps the order)."""
    bus = EventBus(redis_cache, keys.events, key=KEY, tolerance_seconds=60)
    seen: list[dict[str, Any]] = []
    bus.start(lambda event: _append(seen, event))
    event = {"type": "alias_changed", "model": "m"}
    sent = {
        Rejected.UNSIGNED: forged(event),
        Rejected.BAD_SIGNATURE: signed(event, "another-secret"),
        Rejected.STALE: signed(event, "unit-test-secret", at=time.time() - 120),
        Rejected.MALFORMED: b"not json",
    }
    before = {reason: rejected(reason) for reason in Rejected}
    try:
        await asyncio.wait_for(bus.subscribed.wait(), 5)
        for message in sent.values():
            await redis_cache.run(lambda r, m=message: r.publish(keys.events, m))
        # Tampered after signing: the signature no longer matches.
        tampered = signed({**event, "model": "other"}, "unit-test-secret").replace(
            b'"other"', b'"m"'
        )
        await redis_cache.run(lambda r: r.publish(keys.events, tampered))
        assert await bus.publish({"type": "serving", "model": "m", "version": "2"})
        await eventually(lambda: bool(seen), 5, "the signed event")
    finally:
        await bus.stop()
    assert seen == [{"type": "serving", "model": "m", "version": "2"}]
    after = {reason: rejected(reason) - before[reason] for reason in Rejected}
    assert after == {
        Rejected.UNSIGNED: 1,
        Rejected.BAD_SIGNATURE: 2,
        Rejected.STALE: 1,
        Rejected.MALFORMED: 1,
    }


def test_the_events_key_is_derived_not_the_webhook_secret() -> None:
    assert events_key("s") != b"s" and len(events_key("s")) == 32
    assert events_key("s") != events_key("t")
