"""Replayed webhook deliveries: a delivery id is handled once, on whichever replica it reaches.

A verified delivery is marked with ``SET NX EX`` on ``{ns}:delivery:{id}`` until its timestamp
leaves the accepted window (after that the signature check refuses it anyway). Without Redis,
or while it fails, this process's own memory decides (a replay to another process then gets
through: it costs one coalesced refresh, nothing else)."""

from __future__ import annotations

import logging
import time

from service.cache.keys import KeySpace
from service.cache.redis import RedisCache
from service.errors import CacheUnavailable

log = logging.getLogger(__name__)
LOCAL_MAX_ENTRIES = 10_000


class DeliveryLog:
    """Which delivery ids were seen, for ``tolerance_seconds`` past their timestamp."""

    def __init__(self, redis: RedisCache | None, keys: KeySpace, *, tolerance_seconds: int) -> None:
        self.redis = redis
        self.keys = keys
        self.tolerance = tolerance_seconds
        self._local: dict[str, float] = {}  # id -> when it may be forgotten (monotonic)

    async def first_time(self, delivery_id: str, timestamp: int, now: float) -> bool:
        """Mark ``delivery_id`` seen; False if it was already (here or, via Redis, anywhere)."""
        ttl = max(1, timestamp + self.tolerance - int(now) + 1)
        if self._remember(delivery_id, ttl):
            return False
        if self.redis is not None:
            key = self.keys.delivery(delivery_id)
            try:
                return bool(await self.redis.run(lambda r: r.set(key, b"1", nx=True, ex=ttl)))
            except CacheUnavailable as exc:
                log.warning("delivery ids checked in this process only: %s", exc)
        return True

    def _remember(self, delivery_id: str, ttl: int) -> bool:
        """Record locally; True if it was recorded and not expired."""
        now = time.monotonic()
        if len(self._local) >= LOCAL_MAX_ENTRIES:
            self._local = {k: t for k, t in self._local.items() if t > now}
            while len(self._local) >= LOCAL_MAX_ENTRIES:  # still full: forget the oldest
                del self._local[next(iter(self._local))]
        seen = self._local.get(delivery_id, 0.0) > now
        if not seen:
            self._local[delivery_id] = now + ttl
        return seen
