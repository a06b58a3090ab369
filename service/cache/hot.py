"""Samples the rows requests look up into a bounded Redis sorted set per version and output,
so a new version can be warmed with the old one's hottest inputs before it serves. Every set
that holds client rows expires (``HOT_TTL_SECONDS``); ``no-store`` requests are not sampled."""

from __future__ import annotations

import random
from typing import Any, cast

import orjson

from service.background import BackgroundTasks
from service.cache.redis import Client, RedisCache
from service.errors import CacheUnavailable
from service.rows.canonical import CanonicalRows

HOT_TTL_SECONDS = 86400
"""Lifetime of a hot set after its last sample; a purge drops it sooner."""


class HotInputs:
    """member = a canonical row as JSON, score = how often it was sampled."""

    def __init__(
        self,
        redis: RedisCache,
        background: BackgroundTasks,
        *,
        rate: float,
        max_entries: int,
    ) -> None:
        self.redis = redis
        self.rate = rate
        self.max_entries = max_entries
        self._background = background

    def maybe_record(self, key: str, rows: CanonicalRows) -> None:
        """With probability ``rate``, count this request's rows into ``key`` (in the background)."""
        if self.rate <= 0 or random.random() >= self.rate:
            return
        values: Any = rows.values
        members = [
            orjson.dumps(r) for r in (values.tolist() if hasattr(values, "tolist") else values)
        ]
        self._background.spawn(self._record(key, members))

    async def _record(self, key: str, members: list[bytes]) -> None:
        async def write(r: Client) -> None:
            async with r.pipeline(transaction=False) as pipe:
                for member in members:
                    pipe.zincrby(key, 1, member)
                # Keep the top entries only; the TTL drops the set with its version.
                pipe.zremrangebyrank(key, 0, -(self.max_entries + 1))
                pipe.expire(key, HOT_TTL_SECONDS)
                await pipe.execute()

        try:
            await self.redis.run(write)
        except CacheUnavailable:
            pass  # sampling is best effort

    async def top(self, key: str, k: int) -> list[list[Any]]:
        """The ``k`` hottest rows of ``key``, hottest first."""
        members = await self.redis.run(lambda r: r.zrevrange(key, 0, k - 1))
        return [orjson.loads(m) for m in cast(list[bytes], members)]

    async def carry_over(self, key: str, rows: list[list[Any]]) -> None:
        """Seed ``key`` with ``rows`` (hottest first) unless it has them already."""
        scores = {orjson.dumps(r): len(rows) - i for i, r in enumerate(rows)}

        async def write(r: Client) -> None:
            async with r.pipeline(transaction=False) as pipe:
                pipe.zadd(key, scores, nx=True)
                pipe.expire(key, HOT_TTL_SECONDS)  # copied inputs expire like sampled ones
                await pipe.execute()

        await self.redis.run(write)
