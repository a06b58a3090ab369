"""A bounded LRU with per-entry expiry: the embedded cache and the L1 near-cache."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Sequence

from service.cache.base import PredictionCache


class MemoryCache(PredictionCache):
    """In-process cache; the sync ``*_now`` methods serve the hot path without an await."""

    write_behind = False

    def __init__(
        self,
        max_entries: int,
        *,
        max_ttl_seconds: float | None = None,
        layer: str = "memory",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._data: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._max_entries = max_entries
        self._max_ttl = max_ttl_seconds
        self._clock = clock
        self.layer = layer

    def __len__(self) -> int:
        return len(self._data)

    def get_many_now(self, keys: Sequence[str]) -> list[bytes | None]:
        """Values for ``keys``; expired entries are dropped on sight."""
        now = self._clock()
        data = self._data
        out: list[bytes | None] = []
        for key in keys:
            entry = data.get(key)
            if entry is None:
                out.append(None)
            elif entry[0] <= now:
                del data[key]
                out.append(None)
            else:
                data.move_to_end(key)
                out.append(entry[1])
        return out

    def set_many_now(self, items: Sequence[tuple[str, bytes]], ttl_seconds: float) -> None:
        """Store items, evicting the least recently used beyond the bound."""
        if self._max_ttl is not None:
            ttl_seconds = min(ttl_seconds, self._max_ttl)
        expires = self._clock() + ttl_seconds
        data = self._data
        for key, value in items:
            data[key] = (expires, value)
            data.move_to_end(key)
        while len(data) > self._max_entries:
            data.popitem(last=False)

    def delete_prefix(self, prefix: str) -> int:
        """Drop every key starting with ``prefix``; returns how many."""
        doomed = [k for k in self._data if k.startswith(prefix)]
        for k in doomed:
            del self._data[k]
        return len(doomed)

    def clear(self) -> None:
        """Drop everything."""
        self._data.clear()

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        return self.get_many_now(keys)

    async def set_many(self, items: Sequence[tuple[str, bytes]], ttl_seconds: int) -> None:
        self.set_many_now(items, ttl_seconds)
