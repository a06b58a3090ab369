"""ModelManager: refreshes read the alias under the lock, and the cross-worker fence."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from service.models.manager import ModelManager
from tests.support.metrics import sample
from tests.support.sources import MovableAlias
from tests.support.waiting import eventually

Registry = MovableAlias


def version(manager: ModelManager) -> str | None:
    return manager.current.version if manager.current is not None else None


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
    await asyncio.to_thread(source.reading.wait, 5)
    source.version = "3"
    second = asyncio.create_task(manager.refresh("poll"))  # would read 3 at once
    # The late answer comes once the second refresh has got as far as it can without it:
    # queued behind the lock the first holds while it reads or, were the alias read outside the
    # lock, swapped to 3 already (the late 2 would then swap back).
    await eventually(
        lambda: manager._lock.locked() or version(manager) == "3", 5, "the second refresh"
    )
    late.set()
    await asyncio.gather(first, second)
    assert version(manager) == "3"


async def test_a_fenced_worker_catches_up_before_it_answers() -> None:
    source = Registry("1")
    manager = await loaded(source)
    manager.served_elsewhere("1")
    assert manager.fence is None  # its own version: nothing to catch up with
    source.version = "2"
    manager.served_elsewhere("2")
    assert manager.fence == "2"
    await manager.catch_up(timeout=5)
    assert version(manager) == "2"
    assert manager.fence is None


async def test_a_stale_fence_is_dropped_when_the_alias_names_our_version() -> None:
    source = Registry("1")
    manager = await loaded(source)
    manager.served_elsewhere("2")  # announced, then rolled back before we refreshed
    await manager.catch_up(timeout=5)
    assert version(manager) == "1"
    assert manager.fence is None


async def test_catch_up_is_bounded_and_shared() -> None:
    source = Registry("1")
    manager = await loaded(source)
    source.version = "2"
    source.gates["2"] = threading.Event()
    manager.served_elsewhere("2")
    waits: list[Any] = [manager.catch_up(timeout=0.05) for _ in range(3)]
    await asyncio.gather(*waits)  # returns after the bound, still on 1
    assert version(manager) == "1"
    assert manager.fence == "2"
    source.gates["2"].set()
    await manager.catch_up(timeout=5)  # the same refresh, now done
    assert version(manager) == "2"


async def test_polls_are_counted_and_a_failed_one_keeps_the_version() -> None:
    def polls(outcome: str) -> float:
        return sample("memoserve_model_polls_total", outcome=outcome)

    source = Registry("1")
    manager = ModelManager(source, poll_seconds=0.01)
    ok, error = polls("ok"), polls("error")
    manager.start()
    try:
        await eventually(lambda: polls("ok") >= ok + 2, 5, "two polls")
        assert polls("error") == error
        source.unreachable = True
        await eventually(lambda: polls("error") >= error + 2, 5, "two failed polls")
        assert version(manager) == "1"
        source.unreachable = False
        source.version = "2"
        await eventually(lambda: version(manager) == "2", 5, "the poll to find 2")
    finally:
        await manager.stop()
