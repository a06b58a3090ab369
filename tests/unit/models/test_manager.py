"""ModelManager: refreshes read the alias under the lock, and the cross-worker fence."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from service.models.manager import ModelManager
from tests.support.sources import MovableAlias

Registry = MovableAlias


async def loaded(source: Registry) -> ModelManager:
    manager = ModelManager(source)
    await manager.refresh("start-up")
    return manager


async def test_a_late_alias_read_never_swaps_back() -> None:
    source = Registry("1")
    manager = await loaded(source)
    source.version = "2"
    late = source.slow_read = threading.Event()
    first = asyncio.create_task(manager.refresh("pubsub"))  # reads 2; the answer is late
    await asyncio.sleep(0.05)
    source.version = "3"
    second = asyncio.create_task(manager.refresh("poll"))  # would read 3 at once
    await asyncio.sleep(0.05)
    late.set()
    await asyncio.gather(first, second)
    assert manager.current is not None and manager.current.version == "3"


async def test_a_fenced_worker_catches_up_before_it_answers() -> None:
    source = Registry("1")
    manager = await loaded(source)
    manager.served_elsewhere("1")
    assert manager.fence is None  # its own version: nothing to catch up with
    source.version = "2"
    manager.served_elsewhere("2")
    assert manager.fence == "2"
    await manager.catch_up(timeout=5)
    assert manager.current is not None and manager.current.version == "2"
    assert manager.fence is None


async def test_a_stale_fence_is_dropped_when_the_alias_names_our_version() -> None:
    source = Registry("1")
    manager = await loaded(source)
    manager.served_elsewhere("2")  # announced, then rolled back before we refreshed
    await manager.catch_up(timeout=5)
    assert manager.current is not None and manager.current.version == "1"
    assert manager.fence is None


async def test_catch_up_is_bounded_and_shared() -> None:
    source = Registry("1")
    manager = await loaded(source)
    source.version = "2"
    source.gates["2"] = threading.Event()
    manager.served_elsewhere("2")
    waits: list[Any] = [manager.catch_up(timeout=0.05) for _ in range(3)]
    await asyncio.gather(*waits)  # returns after the bound, still on 1
    assert manager.current is not None and manager.current.version == "1"
    assert manager.fence == "2"
    source.gates["2"].set()
    await manager.catch_up(timeout=5)  # the same refresh, now done
    assert manager.current is not None and manager.current.version == "2"
