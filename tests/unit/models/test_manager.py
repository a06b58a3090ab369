"""ModelManager: refreshes read the alias under the lock, and the cross-worker fence."""

from __future__ import annotations

import asyncio
import threading
from typing import Any, cast

from service.models.loaded import LoadedModel, Predictor
from service.models.manager import ModelManager
from service.models.schema import InputSchema
from service.models.source import ModelSource


class Registry(ModelSource):
    """An alias that tests move; a read of it, or a load of a version, can be held."""

    def __init__(self, version: str) -> None:
        self.name = "m"
        self.registry_name = "m"
        self.alias = "champion"
        self.version = version
        self.gates: dict[str, threading.Event] = {}
        self.slow_read: threading.Event | None = None

    def resolve(self) -> str:
        version = self.version  # what the registry said when asked...
        if self.slow_read is not None:
            gate, self.slow_read = self.slow_read, None
            gate.wait(5)  # ...arrives late
        return version

    def load(self, version: str) -> LoadedModel:
        gate = self.gates.get(version)
        if gate is not None:
            gate.wait(5)
        return LoadedModel("m", version, InputSchema.positional(1), cast(Predictor, object()))


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
