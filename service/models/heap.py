"""Keep the garbage collector off a loaded model, without pinning the model it replaced.

A worker's GC pauses ~68 ms walking a model's objects; ``gc.freeze()`` after a load moves them
into the permanent generation, which cut hit p99 under load from ~126 to ~19 ms here. Frozen
objects are never collected, though: a replaced model still referenced at the freeze (by the
swap itself, or by requests finishing on it) would stay in memory for good if its objects form
cycles. So a swap unfreezes at once, and freezes again only after a grace period, once the old
version is unreachable and a collection has taken it.
"""

from __future__ import annotations

import asyncio
import gc

from service.background import BackgroundTasks
from service.models.loaded import LoadedModel


class HeapFreezer:
    """An ``after_swap`` hook of the ModelManager."""

    def __init__(self, *, grace_seconds: float = 5.0) -> None:
        self.grace_seconds = grace_seconds
        self._pending = BackgroundTasks("gc freeze")

    async def after_swap(self, old: LoadedModel | None, new: LoadedModel) -> None:
        """Freeze now after the first load; after a swap, unfreeze and freeze again later."""
        gc.unfreeze()
        if old is None:
            self._freeze()
            return
        await self._pending.cancel()  # a quicker second swap restarts the grace period
        self._pending.spawn(self._freeze_later())

    async def stop(self) -> None:
        """Cancel a pending freeze."""
        await self._pending.cancel()

    async def _freeze_later(self) -> None:
        await asyncio.sleep(self.grace_seconds)
        self._freeze()

    @staticmethod
    def _freeze() -> None:
        gc.collect()
        gc.freeze()
