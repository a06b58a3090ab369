"""Unlink an old version's keys: one replica, chosen by a ``SET NX EX`` lock, in small batches
(SCAN + UNLINK, on every primary of a cluster)."""

from __future__ import annotations

import contextlib
import logging
from typing import cast

from service.cache.keys import OUTPUTS, KeySpace
from service.cache.redis import RedisCache
from service.errors import CacheUnavailable
from service.observability import metrics

log = logging.getLogger(__name__)
_LOCK_SECONDS = 300


async def purge_version(
    redis: RedisCache, keys: KeySpace, model: str, version: str, *, batch: int, attempt: str
) -> int | None:
    """Unlink every row and the hot sets of ``model``/``version`` unless the version is active
    again (a rollback) or another replica is purging it right now. Returns keys unlinked, None
    if skipped.

    The lock lives only while the purge runs (its expiry bounds a replica that dies mid-way),
    so the same version is purged again after a later promotion away from it."""
    lock = keys.purge_lock(model, version, attempt)
    total = 0
    try:
        active = await redis.run(lambda r: r.get(keys.active(model)))
        if active is not None and cast(bytes, active).decode() == version:
            log.info("not purging %s version %s: it is active again", model, version)
            return None
        if not await redis.run(lambda r: r.set(lock, b"1", nx=True, ex=_LOCK_SECONDS)):
            return None
        try:
            hot = [keys.hot(model, version, output) for output in OUTPUTS]
            total += await _unlink(redis, hot)
            # One SCAN per primary on a cluster (a version's rows spread over every one).
            async for found in redis.scan(keys.version_pattern(model, version), batch):
                total += await _unlink(redis, found)
        finally:
            with contextlib.suppress(CacheUnavailable):
                await redis.run(lambda r: r.delete(lock))
    except CacheUnavailable as exc:
        log.warning(
            "purge of %s version %s stopped after %d keys: %s (the TTL bounds the rest)",
            model,
            version,
            total,
            exc,
        )
        return None
    log.info("purged %d keys of %s version %s", total, model, version)
    return total


async def _unlink(redis: RedisCache, keys: list[bytes] | list[str]) -> int:
    if not keys:
        return 0
    unlinked = int(await redis.run(lambda r: r.unlink(*keys)))
    metrics.PURGED_KEYS.inc(unlinked)
    return unlinked
