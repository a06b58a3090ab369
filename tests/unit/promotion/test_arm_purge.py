"""The per-arm purge rule: a swap of one arm leaves alone every version another arm serves,
whether this worker's arms or another replica's ``active`` keys name it."""

from __future__ import annotations

from service.background import BackgroundTasks
from service.cache.keys import KeySpace
from service.cache.memory import MemoryCache
from service.cache.redis import RedisCache
from service.cache.tiered import TieredCache
from service.models.arms import Arm, ServedVersions
from service.models.loaded import LoadedModel
from service.promotion.hooks import SwapHooks
from service.promotion.purge import purge_version, still_served
from service.settings import Settings
from tests.support.sources import MovableAlias
from tests.support.waiting import eventually


def test_the_rule() -> None:
    assert still_served("2", [b"2", None])
    assert still_served("2", [None, "2"])
    assert not still_served("2", [b"1", None, "3"])
    assert not still_served("2", [])


def arm_hooks(
    redis: RedisCache, keys: KeySpace, l1: MemoryCache, arm: Arm, served: ServedVersions
) -> SwapHooks:
    cache = TieredCache(redis, l1, BackgroundTasks("t"), ttl_seconds=60)
    settings = Settings(namespace=keys.namespace, model_poll_seconds=0, warmup_top_k=0)
    return SwapHooks(
        settings,
        keys,
        cache,
        redis=redis,
        bus=None,
        hot=None,
        registry_name="m",
        arm=arm,
        served=served,
    )


async def swap(hooks: SwapHooks, old: LoadedModel | None, new: LoadedModel) -> None:
    for hook in hooks.after_swap:
        await hook(old, new)


def row(keys: KeySpace, version: str) -> str:
    return keys.row_prefix("m", version, "predict") + "a" * 32


async def test_a_version_another_arm_serves_keeps_its_keys_and_the_rest_are_purged(
    redis_cache: RedisCache, keys: KeySpace
) -> None:
    v = {n: MovableAlias(n).load(n) for n in "1239"}
    l1 = MemoryCache(10, layer="l1")
    entries = [(row(keys, n), n.encode()) for n in "1239"]
    l1.set_many_now(entries, 60)
    await redis_cache.set_many(entries, 60)
    served = ServedVersions()
    champion = arm_hooks(redis_cache, keys, l1, Arm.CHAMPION, served)
    canary = arm_hooks(redis_cache, keys, l1, Arm.CANARY, served)
    await swap(champion, None, v["1"])
    await swap(canary, None, v["2"])
    assert await redis_cache.run(lambda r: r.mget(keys.actives("m"))) == [b"1", b"2", None]

    # The challenger is promoted: the champion moves onto the canary's version 2 and keeps it;
    # version 1, which no arm serves now, goes.
    await swap(champion, v["1"], v["2"])
    await eventually(lambda: l1.get_many_now([row(keys, "1")]) == [None], 5, "version 1 forgotten")

    async def gone(version: str) -> bool:
        return await redis_cache.get_many([row(keys, version)]) == [None]

    await eventually(lambda: gone("1"), 5, "version 1 purged")
    # The canary moves on to 3: 2 is the champion's now, so it stays, in Redis and in L1.
    await swap(canary, v["2"], v["3"])
    # A purge spawned after it (the shadow leaving 9) has run: one of 2 would have too.
    shadow = arm_hooks(redis_cache, keys, l1, Arm.SHADOW, served)
    await swap(shadow, None, v["9"])
    await swap(shadow, v["9"], v["3"])
    await eventually(lambda: gone("9"), 5, "version 9 purged")
    assert await redis_cache.get_many([row(keys, "2"), row(keys, "3")]) == [b"2", b"3"]
    assert l1.get_many_now([row(keys, "2")]) == [b"2"]
    for hooks in (champion, canary, shadow):
        await hooks.stop()


async def test_the_purge_itself_rechecks_every_arms_active_key(
    redis_cache: RedisCache, keys: KeySpace
) -> None:
    """Another replica's canary serves 4 (its active key says so): nothing here serves it,
    yet a purge of 4 must not run; once no key names it, it does."""
    await redis_cache.set_many([(row(keys, "4"), b"4")], 60)
    canary_active = keys.active("m", "canary")
    await redis_cache.run(lambda r: r.set(canary_active, b"4", ex=60))
    assert await purge_version(redis_cache, keys, "m", "4", batch=10, attempt="t") is None
    assert (
        await purge_version(redis_cache, keys, "m", "5", batch=10, attempt="t", local=lambda: ["5"])
        is None
    )
    await redis_cache.run(lambda r: r.delete(canary_active))
    assert await purge_version(redis_cache, keys, "m", "4", batch=10, attempt="t") == 1
