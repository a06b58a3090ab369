"""Hot-row sampling in the request path, over a real redis-server: ``no-store`` requests
leave no trace in the hot set, and the hot set expires."""

from __future__ import annotations

from collections.abc import Awaitable

import orjson

from devtools.localstack.processes import LOOPBACK, Proc
from service.cache.hot import HOT_TTL_SECONDS
from service.cache.keys import KeySpace
from service.cache.redis import RedisCache
from service.settings import Settings
from tests.support.app import app_under_test
from tests.support.sources import MovableAlias
from tests.support.waiting import eventually


async def test_no_store_rows_are_not_sampled_and_sampled_rows_expire(
    redis_server: Proc, redis_cache: RedisCache, keys: KeySpace
) -> None:
    settings = Settings(
        redis_url=f"redis://{LOOPBACK}:{redis_server.port}",
        namespace=keys.namespace,
        hot_sample_rate=1,
        model_poll_seconds=0,
        events_enabled=False,
    )
    hot = keys.hot("m", "1", "predict")

    async def members() -> list[bytes]:
        return list(await redis_cache.run(lambda r: r.zrange(hot, 0, -1)))

    async with app_under_test(settings, source=MovableAlias("1")) as served:
        client = served.client
        for value in (1.0, 2.0):
            r = await client.post(
                "/invocations",
                json={"instances": [[value]]},
                headers={"Cache-Control": "no-store"},
            )
            assert r.status_code == 200, r.text
        # A request without it, sent after them, is sampled: once it is there, they would be.
        r = await client.post("/invocations", json={"instances": [[3.0]]})
        assert r.status_code == 200, r.text
        await eventually(lambda: _any(members()), 5, "the sampled row")
    assert await members() == [orjson.dumps([3.0])]
    assert 0 < await redis_cache.run(lambda r: r.ttl(hot)) <= HOT_TTL_SECONDS


async def _any(found: Awaitable[list[bytes]]) -> bool:
    return bool(await found)
