"""Hot inputs of the serving version, and warming a new version with them before the swap."""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any, cast

import orjson
from redis.asyncio import Redis

from service.cache.keys import key_prefix, row_keys
from service.cache.redis import RedisCache
from service.canonical import CanonicalRows, RawRows, canonicalize
from service.errors import CacheUnavailable, InvalidInput
from service.models.loaded import LoadedModel

log = logging.getLogger(__name__)


def hot_key(namespace: str, model: str, version: str, output: str) -> str:
    """The sorted set of one version's hottest rows (purged with the version)."""
    return key_prefix(namespace, model, version, output) + "hot"


class HotInputs:
    """Samples looked-up rows into a bounded sorted set: member = canonical row, score = count."""

    def __init__(self, redis: RedisCache, namespace: str, *, rate: float, max_entries: int) -> None:
        self.redis = redis
        self.namespace = namespace
        self.rate = rate
        self.max_entries = max_entries
        self._tasks: set[asyncio.Task[None]] = set()

    def maybe_record(self, model: LoadedModel, output: str, rows: CanonicalRows) -> None:
        """With probability ``rate``, count this request's rows (in the background)."""
        if self.rate <= 0 or random.random() >= self.rate:
            return
        values: Any = rows.values
        members = [
            orjson.dumps(r) for r in (values.tolist() if hasattr(values, "tolist") else values)
        ]
        key = hot_key(self.namespace, model.name, model.version, output)
        task = asyncio.create_task(self._record(key, members))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _record(self, key: str, members: list[bytes]) -> None:
        async def write(r: Redis) -> None:
            async with r.pipeline(transaction=False) as pipe:
                for member in members:
                    pipe.zincrby(key, 1, member)
                # Keep the top entries only; the TTL drops the set with its version.
                pipe.zremrangebyrank(key, 0, -(self.max_entries + 1))
                pipe.expire(key, 86400)
                await pipe.execute()

        try:
            await self.redis.run(write)
        except CacheUnavailable:
            pass  # sampling is best effort

    async def top(self, model: str, version: str, output: str, k: int) -> list[list[Any]]:
        """The ``k`` hottest rows of a version, hottest first."""
        key = hot_key(self.namespace, model, version, output)
        members = await self.redis.run(lambda r: r.zrevrange(key, 0, k - 1))
        return [orjson.loads(m) for m in cast(list[bytes], members)]


async def warm(
    hot: HotInputs,
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
            rows_data = await hot.top(old.name, old.version, output, top_k)
        except CacheUnavailable:
            return warmed
        if not rows_data:
            continue
        try:
            rows = canonicalize(RawRows(rows_data), new.schema)
        except InvalidInput as exc:
            log.info("warm-up skipped for %s: the new schema refuses old rows (%s)", output, exc)
            continue
        prefix = key_prefix(hot.namespace, new.name, new.version, output)
        for start in range(0, len(rows), max_rows):
            chunk = rows.take(range(start, min(start + max_rows, len(rows))))
            values = await asyncio.to_thread(new.predict_encoded, chunk, output)
            items = list(zip(row_keys(prefix, chunk.row_bytes), values, strict=True))
            try:
                await hot.redis.set_many(items, ttl_seconds)
            except CacheUnavailable:
                return warmed
            warmed += len(items)
        # Carry the hot set over, so the next promotion can warm from it too.
        new_key = hot_key(hot.namespace, new.name, new.version, output)
        scores = {orjson.dumps(r): len(rows_data) - i for i, r in enumerate(rows_data)}
        try:
            await hot.redis.run(lambda r, k=new_key, s=scores: r.zadd(k, s, nx=True))  # type: ignore[misc]
        except CacheUnavailable:
            pass
    return warmed
