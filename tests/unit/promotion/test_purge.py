"""purge_version against a real redis-server: one version's rows and hot sets go, the rest
stays; a rollback or another replica's purge skips it."""

from __future__ import annotations

from service.cache.keys import KeySpace
from service.cache.redis import RedisCache
from service.promotion.purge import purge_version
from tests.support.metrics import sample


async def seed(redis: RedisCache, keys: KeySpace, version: str, rows: int) -> list[str]:
    written = [keys.row_prefix("m", version, "predict") + f"{i:032x}" for i in range(rows)]
    written.append(keys.row_prefix("m", version, "predict_proba") + "0" * 32)
    written.append(keys.hot("m", version, "predict"))
    await redis.set_many([(k, b"1") for k in written], 60)
    return written


async def put(redis: RedisCache, key: str, value: bytes) -> None:
    """A plain string key, as the service writes the steering keys (not a framed row)."""
    await redis.run(lambda r: r.set(key, value, ex=60))


async def exists(redis: RedisCache, names: list[str]) -> int:
    return int(await redis.run(lambda r: r.exists(*names)))


async def test_every_key_of_the_version_goes_and_nothing_else(
    shared_redis: RedisCache, keys: KeySpace
) -> None:
    old = await seed(shared_redis, keys, "1", 25)
    kept = await seed(shared_redis, keys, "2", 3)
    other = await seed(shared_redis, KeySpace(keys.namespace + "x"), "1", 3)
    await put(shared_redis, keys.active("m"), b"2")
    before = sample("memoserve_cache_purged_keys_total")

    purged = await purge_version(shared_redis, keys, "m", "1", batch=10, attempt="swap")

    assert purged == len(old)
    assert await exists(shared_redis, old) == 0
    assert await exists(shared_redis, kept + other) == len(kept + other)
    assert sample("memoserve_cache_purged_keys_total") == before + len(old)
    assert await exists(shared_redis, [keys.purge_lock("m", "1", "swap")]) == 0  # released


async def test_a_version_active_again_is_not_purged(
    shared_redis: RedisCache, keys: KeySpace
) -> None:
    old = await seed(shared_redis, keys, "1", 3)
    await put(shared_redis, keys.active("m"), b"1")  # rolled back to 1
    assert await purge_version(shared_redis, keys, "m", "1", batch=10, attempt="sweep") is None
    assert await exists(shared_redis, old) == len(old)


async def test_another_replicas_purge_is_not_repeated(
    shared_redis: RedisCache, keys: KeySpace
) -> None:
    old = await seed(shared_redis, keys, "1", 3)
    await put(shared_redis, keys.purge_lock("m", "1", "swap"), b"1")
    assert await purge_version(shared_redis, keys, "m", "1", batch=10, attempt="swap") is None
    assert await exists(shared_redis, old) == len(old)
