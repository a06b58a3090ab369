"""HeapFreezer: a replaced model is collected even when its objects form cycles."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from service.models.heap import HeapFreezer
from service.models.loaded import LoadedModel
from service.models.manager import ModelManager
from service.rows.canonical import CanonicalRows
from service.rows.schema import InputSchema
from tests.support.sources import MovableAlias


class Cyclic:
    """A predictor whose objects reference each other, as many real models' do."""

    outputs = ("predict",)

    def __init__(self) -> None:
        self.me = self

    def __call__(self, rows: CanonicalRows, output: str) -> Sequence[Any]:
        return [0] * len(rows)


class CyclicSource(MovableAlias):
    def load(self, version: str) -> LoadedModel:
        return LoadedModel("m", version, InputSchema.positional(1), Cyclic())


@pytest.fixture(autouse=True)
def _thaw() -> Iterator[None]:
    yield
    gc.unfreeze()  # the freezer acts on this whole test process


async def test_the_replaced_model_is_collected_after_the_grace_period() -> None:
    freezer = HeapFreezer(grace_seconds=0.05)
    source = CyclicSource("1")
    manager = ModelManager(source, after_swap=(freezer.after_swap,))
    await manager.refresh("start-up")
    assert gc.get_freeze_count() > 0  # the first load is frozen at once
    assert manager.current is not None
    old = weakref.ref(manager.current.predictor)
    source.version = "2"
    await manager.refresh("poll")
    while gc.get_freeze_count() == 0:  # frozen again after the grace period
        await asyncio.sleep(0.01)
    assert old() is None, "the replaced model was frozen with the heap: it can never be freed"
    await freezer.stop()
