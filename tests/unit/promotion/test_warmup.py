"""Warm-up against a real redis-server: the old version's hot rows are answered by the new
version and stored under its keys before it serves; the hot set carries over."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from service.background import BackgroundTasks
from service.cache.hot import HOT_TTL_SECONDS, HotInputs
from service.cache.keys import KeySpace
from service.cache.redis import RedisCache
from service.models.loaded import LoadedModel
from service.promotion.warmup import warm
from service.rows.canonical import CanonicalRows, RawRows, canonicalize
from service.rows.schema import InputSchema

SCHEMA = InputSchema.positional(2)


class Times:
    outputs = ("predict",)

    def __init__(self, factor: float) -> None:
        self.factor = factor

    def __call__(self, rows: CanonicalRows, output: str) -> Sequence[Any]:
        return np.asarray(rows.values).sum(axis=1) * self.factor


async def test_hot_rows_of_the_old_version_are_cached_for_the_new_one(
    redis_cache: RedisCache, keys: KeySpace
) -> None:
    old = LoadedModel("m", "1", SCHEMA, Times(1))
    new = LoadedModel("m", "2", SCHEMA, Times(10))
    sampling = BackgroundTasks("t")
    hot = HotInputs(redis_cache, sampling, rate=1.0, max_entries=10)
    background_rows = [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]
    for row, times in zip(background_rows, (3, 2, 1), strict=True):
        for _ in range(times):
            hot.maybe_record(keys.hot("m", "1", "predict"), canonicalize(RawRows([row]), SCHEMA))
    await sampling.drain()

    warmed = await warm(hot, redis_cache, keys, old, new, top_k=2, ttl_seconds=60, max_rows=1)

    assert warmed == 2  # the two hottest
    prefix = keys.row_prefix("m", "2", "predict")
    rows = canonicalize(RawRows(background_rows), SCHEMA)
    stored = await redis_cache.get_many(keys.rows(prefix, rows.row_bytes))
    assert stored == [b"30.0", b"70.0", None]
    carried = await hot.top(keys.hot("m", "2", "predict"), 10)
    assert carried == background_rows[:2]
    # Client rows copied anywhere expire: the sampled set, the carried-over set, the rows.
    copies = [keys.hot("m", "1", "predict"), keys.hot("m", "2", "predict")]
    copies += keys.rows(prefix, rows.row_bytes[:2])
    for key in copies:
        assert 0 < await redis_cache.run(lambda r, k=key: r.ttl(k)) <= HOT_TTL_SECONDS, key
