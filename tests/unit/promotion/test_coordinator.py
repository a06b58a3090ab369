"""PromotionCoordinator: which deliveries and events refresh the worker, and what they tell
the other workers (over a real redis-server)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from typing import Any

import pytest

from service.cache.keys import KeySpace
from service.cache.redis import RedisCache
from service.models.arms import ServingArms
from service.models.manager import ModelManager
from service.promotion.coordinator import PromotionCoordinator, WebhookOutcome
from service.promotion.events import EventBus
from tests.support.events import KEY
from tests.support.sources import MovableAlias
from tests.support.waiting import eventually

ALIAS_MOVED = {
    "entity": "model_version_alias",
    "action": "created",
    "data": {"name": "m", "alias": "champion", "version": "2"},
}


@pytest.fixture
async def manager() -> AsyncIterator[ModelManager]:
    m = ModelManager(MovableAlias("1"))
    await m.refresh("start-up")
    yield m
    await m.stop()


def serves(manager: ModelManager, version: str) -> bool:
    return manager.current is not None and manager.current.version == version


@pytest.mark.parametrize(
    ("payload", "outcome"),
    [
        ({**ALIAS_MOVED, "action": "deleted"}, WebhookOutcome.NOT_AN_ALIAS_EVENT),
        (
            {**ALIAS_MOVED, "data": {"name": "other", "alias": "champion"}},
            WebhookOutcome.OTHER_MODEL,
        ),
        ({**ALIAS_MOVED, "data": {"name": "m", "alias": "staging"}}, WebhookOutcome.OTHER_MODEL),
    ],
)
async def test_deliveries_for_something_else_change_nothing(
    manager: ModelManager, payload: dict[str, Any], outcome: WebhookOutcome
) -> None:
    source = manager.source
    assert isinstance(source, MovableAlias)
    source.version = "2"  # the alias did move: only the payload decides that we ignore it
    coordinator = PromotionCoordinator(ServingArms(manager), None)
    assert await coordinator.on_webhook(payload) is outcome
    assert outcome.status_code == 200
    await coordinator.stop()
    assert manager.current is not None and manager.current.version == "1"


async def test_an_accepted_delivery_tells_every_worker_and_refreshes_this_one(
    manager: ModelManager, redis_cache: RedisCache, keys: KeySpace
) -> None:
    assert isinstance(manager.source, MovableAlias)
    manager.source.version = "2"
    heard: list[dict[str, Any]] = []
    sibling = EventBus(redis_cache, keys.events, key=KEY)

    async def listen(event: dict[str, Any]) -> None:
        heard.append(event)

    sibling.start(listen)
    coordinator = PromotionCoordinator(
        ServingArms(manager), EventBus(redis_cache, keys.events, key=KEY)
    )
    try:
        await asyncio.wait_for(sibling.subscribed.wait(), 5)
        outcome = await coordinator.on_webhook(ALIAS_MOVED)
        assert (outcome, outcome.status_code) == (WebhookOutcome.ACCEPTED, 202)
        await eventually(lambda: serves(manager, "2"), 5, "version 2 served")
        await eventually(lambda: bool(heard), 5, "the sibling to hear the event")
    finally:
        await sibling.stop()
        await coordinator.stop()
    # "Look now", not "serve 2": the payload's version is not passed on.
    assert heard == [{"type": "alias_changed", "model": "m", "alias": "champion"}]


async def test_an_unreachable_registry_keeps_the_current_version(manager: ModelManager) -> None:
    assert isinstance(manager.source, MovableAlias)
    manager.source.unreachable = True
    coordinator = PromotionCoordinator(ServingArms(manager), None)
    assert await coordinator.on_webhook(ALIAS_MOVED) is WebhookOutcome.ACCEPTED
    await coordinator.stop()
    assert serves(manager, "1")


async def test_a_version_in_an_event_is_never_served_unless_the_registry_names_it(
    manager: ModelManager,
) -> None:
    """The alias stays on 1; events claim 9. The fence makes the worker look, and it stays."""
    coordinator = PromotionCoordinator(ServingArms(manager), None)
    for kind in ("alias_changed", "loading"):
        await coordinator.on_event({"type": kind, "model": "m", "version": "9"})
    await coordinator.on_event({"type": "serving", "model": "m", "version": "9"})
    assert manager.fence == "9"
    assert await manager.serving() is manager.current  # caught up: re-read the alias
    await coordinator.stop()
    assert serves(manager, "1") and manager.fence is None


@pytest.mark.parametrize("via", ["events", "webhooks"])
async def test_a_burst_of_refresh_requests_costs_at_most_two_alias_reads(
    manager: ModelManager, via: str
) -> None:
    """100 requests while one refresh reads the alias: they share one more read."""
    source = manager.source
    assert isinstance(source, MovableAlias)
    gate = source.slow_read = threading.Event()
    coordinator = PromotionCoordinator(ServingArms(manager), None)
    reads = source.reads

    async def burst(n: int) -> None:
        for _ in range(n):
            if via == "events":
                await coordinator.on_event({"type": "alias_changed", "model": "m"})
            else:
                assert await coordinator.on_webhook(ALIAS_MOVED) is WebhookOutcome.ACCEPTED

    await burst(1)
    await asyncio.to_thread(source.reading.wait, 5)  # the first refresh is reading
    source.version = "2"  # ...and the alias moves while it does: the next read must see it
    await burst(99)
    gate.set()
    await eventually(lambda: serves(manager, "2"), 5, "version 2 served")
    await eventually(lambda: not coordinator.refreshes.busy, 5, "refreshes done")
    await burst(100)  # nothing running: they all join one
    await eventually(lambda: not coordinator.refreshes.busy, 5, "refreshes done")
    await coordinator.stop()
    assert source.reads - reads == 3


async def test_events_refresh_or_fence_this_worker(manager: ModelManager) -> None:
    coordinator = PromotionCoordinator(ServingArms(manager), None)
    await coordinator.on_event({"type": "serving", "model": "other", "version": "2"})
    assert manager.fence is None
    await coordinator.on_event({"type": "serving", "model": "m", "version": "2"})
    assert manager.fence == "2"
    assert isinstance(manager.source, MovableAlias)
    manager.source.version = "2"
    await coordinator.on_event({"type": "alias_changed", "model": "m"})
    await eventually(lambda: serves(manager, "2"), 5, "version 2 served")
    assert manager.fence is None
    await coordinator.stop()


@pytest.mark.parametrize(
    "event",
    [{"type": "loading", "model": "m", "version": "2"}, {"type": "resubscribed"}],
    ids=["a sibling starts loading", "the subscription came back"],
)
async def test_events_that_make_this_worker_look_for_itself(
    manager: ModelManager, event: dict[str, Any]
) -> None:
    assert isinstance(manager.source, MovableAlias)
    manager.source.version = "2"
    coordinator = PromotionCoordinator(ServingArms(manager), None)
    await coordinator.on_event(event)
    await eventually(lambda: serves(manager, "2"), 5, "version 2 served")
    await coordinator.stop()


async def test_each_arm_follows_its_own_alias(manager: ModelManager) -> None:
    """A delivery or event about @challenger refreshes the canary arm only; an event without
    an alias (a pod from before arms) concerns the champion."""
    champion_source = manager.source
    assert isinstance(champion_source, MovableAlias)
    canary_source = champion_source.for_alias("challenger")
    canary = ModelManager(canary_source, arm="canary")
    await canary.refresh("start-up")
    coordinator = PromotionCoordinator(ServingArms(manager, canary=canary), None)
    champion_source.version = canary_source.version = "2"  # both aliases moved in the registry

    moved = {**ALIAS_MOVED, "data": {"name": "m", "alias": "challenger", "version": "2"}}
    assert await coordinator.on_webhook(moved) is WebhookOutcome.ACCEPTED
    await eventually(lambda: serves(canary, "2"), 5, "the canary on 2")
    assert serves(manager, "1")  # the champion was not asked to look

    canary_source.version = "3"
    await coordinator.on_event({"type": "serving", "model": "m", "version": "2"})
    assert (manager.fence, canary.fence) == ("2", None)
    await coordinator.on_event({"type": "alias_changed", "model": "m", "alias": "challenger"})
    await eventually(lambda: serves(canary, "3"), 5, "the canary on 3")
    await coordinator.stop()
    await canary.stop()
