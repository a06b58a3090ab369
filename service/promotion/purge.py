"""Unlink an old version's keys: one replica, chosen by a ``SET NX EX`` lock, in small batches
(SCAN + UNLINK, on every primary of a cluster)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Collection, Iterable
from typing import Any, cast

from service.cache.keys import OUTPUTS, KeySpace
from service.cache.redis import RedisCache
from service.errors import CacheUnavailable
from service.observability import metrics

log = logging.getLogger(__name__)
_LOCK_SECONDS = 300


def still_served(version: str, served: Iterable[bytes | str | None]) -> bool:
    """The purge rule: a version any arm still serves (as an ``active`` key or this worker's
    own arms name it) keeps its keys. A promotion of the canary's version to champion thus
    keeps the entries the canary warmed."""
    names = {v.decode() if isinstance(v, bytes) else v for v in served if v is not None}
    return version in names


async def served_versions(redis: RedisCache, keys: KeySpace, model: str) -> list[bytes | None]:
    """The versions every arm's ``active`` key names (None where an arm published none).
    One GET each in a pipeline, not an MGET: on a cluster the keys live in different slots."""

    async def read(r: Any) -> list[bytes | None]:
        async with r.pipeline(transaction=False) as pipe:
            for key in keys.actives(model):
                pipe.get(key)
            return cast(list[bytes | None], await pipe.execute())

    return await redis.run(read)


async def purge_version(
    redis: RedisCache,
    keys: KeySpace,
    model: str,
    version: str,
    *,
    batch: int,
    attempt: str,
    local: Callable[[], Collection[str]] = tuple,
) -> int | None:
    """Unlink every row and the hot sets of ``model``/``version`` unless an arm serves it
    (``still_served``: a rollback, or the champion moved onto the canary's version; ``local``
    names this worker's arms' versions) or another replica is purging it right now. Returns
    keys unlinked, None if skipped.

    The lock lives only while the purge runs (its expiry bounds a replica that dies mid-way),
    so the same version is purged again after a later promotion away from it."""
    lock = keys.purge_lock(model, version, attempt)
    total = 0
    try:
        served = [*await served_versions(redis, keys, model), *local()]
        if still_served(version, served):
            log.info("not purging %s version %s: an arm serves it", model, version)
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
