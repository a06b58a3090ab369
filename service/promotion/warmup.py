"""Warm a new version with the hottest inputs of the old one before it serves."""

from __future__ import annotations

import asyncio
import logging

from service.cache.hot import HotInputs
from service.cache.keys import KeySpace
from service.cache.redis import RedisCache
from service.errors import CacheUnavailable, InvalidInput
from service.models.loaded import LoadedModel
from service.rows.canonical import RawRows, canonicalize

log = logging.getLogger(__name__)


async def warm(
    hot: HotInputs,
    redis: RedisCache,
    keys: KeySpace,
    old: LoadedModel,
    new: LoadedModel,
    *,
    top_k: int,
    ttl_seconds: int,
    max_rows: int,
) -> int:
    """Compute ``new`` on the hottest rows of ``old`` and store them; returns rows warmed."""
    warmed = 0
    for output in new.outputs:
        if output not in old.outputs:
            continue
        try:
            rows_data = await hot.top(keys.hot(old.name, old.version, output), top_k)
        except CacheUnavailable:
            return warmed
        if not rows_data:
            continue
        try:
            rows = canonicalize(RawRows(rows_data), new.schema)
        except InvalidInput as exc:
            log.info("warm-up skipped for %s: the new schema refuses old rows (%s)", output, exc)
            continue
        prefix = keys.row_prefix(new.name, new.version, output)
        for start in range(0, len(rows), max_rows):
            chunk = rows.take(range(start, min(start + max_rows, len(rows))))
            values = await asyncio.to_thread(new.predict_encoded, chunk, output)
            items = list(zip(keys.rows(prefix, chunk.row_bytes), values, strict=True))
            try:
                await redis.set_many(items, ttl_seconds)
            except CacheUnavailable:
                return warmed
            warmed += len(items)
        # Carry the hot set over, so the next promotion can warm from it too.
        try:
            await hot.carry_over(keys.hot(new.name, new.version, output), rows_data)
        except CacheUnavailable:
            pass
    return warmed
