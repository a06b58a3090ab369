"""Value frames: what memoserve wrote reads back; anything else is a miss, counted."""

from __future__ import annotations

import pytest

from service.cache.envelope import seal, unseal
from service.cache.keys import KeySpace
from service.cache.redis import RedisCache
from tests.support.metrics import sample


def test_a_sealed_value_reads_back() -> None:
    assert unseal(seal(b"[0.1,0.9]")) == b"[0.1,0.9]"


@pytest.mark.parametrize(
    "value",
    [
        b"garbage \xff\xfe",
        b"[0.1,0.9]",  # valid JSON, but not written by memoserve
        b"null",
        b"",
        seal(b"[0.1,0.9]")[:-1],  # truncated
        seal(b"[0.1,0.9]")[:6],  # header only
        seal(b"[0.1,0.9]").replace(b"0.9", b"0.8"),  # a changed byte
    ],
)
def test_anything_else_is_refused(value: bytes) -> None:
    assert unseal(value) is None


async def test_entries_written_straight_into_redis_are_misses(
    redis_cache: RedisCache, keys: KeySpace
) -> None:
    good, *bad = (keys.row_prefix("m", "1", "predict") + f"{i:032x}" for i in range(4))
    await redis_cache.set_many([(good, b"[1]")], 60)
    raw = [b"\x00garbage", seal(b'{"a": 1}')[:-2], b"null"]
    await redis_cache.run(lambda r: r.mset(dict(zip(bad, raw, strict=True))))
    before = sample("memoserve_cache_corrupt_entries_total")
    assert await redis_cache.get_many([good, *bad]) == [b"[1]", None, None, None]
    assert sample("memoserve_cache_corrupt_entries_total") == before + 3
