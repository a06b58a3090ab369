"""Auto-pipelined lookups on a real redis-server: order, one connection, and every failure a
clean error for the lookups in flight, after which the next lookup reconnects."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from devtools.localstack.processes import LOOPBACK, Proc
from service.cache.pipelined import PipelinedLookups, pack_mget
from service.cache.redis import RedisCache
from service.settings import Settings


@pytest.fixture
async def admin(redis_server: Proc) -> AsyncIterator[Redis]:
    client = Redis(host=LOOPBACK, port=redis_server.port)
    yield client
    await client.aclose()


@pytest.fixture
async def lookups(redis_server: Proc) -> AsyncIterator[PipelinedLookups]:
    client = Redis(host=LOOPBACK, port=redis_server.port, client_name="pipelined-test")
    lookups = PipelinedLookups(client, timeout=0.05)
    yield lookups
    await lookups.close()
    await client.aclose()


def test_pack_mget_is_resp() -> None:
    assert pack_mget([b"a", b"bc"]) == b"*3\r\n$4\r\nMGET\r\n$1\r\na\r\n$2\r\nbc\r\n"


async def test_concurrent_lookups_get_their_own_values_over_one_connection(
    lookups: PipelinedLookups, admin: Redis
) -> None:
    await admin.mset({f"p:{i}": f"v{i}" for i in range(500)})
    got = await asyncio.gather(
        *(lookups.mget([f"p:{i}", f"p:{i + 1}", "p:none"]) for i in range(499))
    )
    assert got == [[f"v{i}".encode(), f"v{i + 1}".encode(), None] for i in range(499)]
    clients = await admin.client_list()
    assert sum(c["name"] == "pipelined-test" for c in clients) == 1


async def test_an_abandoned_lookup_leaves_the_others_and_the_connection_alone(
    lookups: PipelinedLookups, admin: Redis
) -> None:
    await admin.mset({f"q:{i}": f"w{i}" for i in range(50)})
    tasks = [asyncio.create_task(lookups.mget([f"q:{i}"])) for i in range(50)]
    await asyncio.sleep(0)
    for task in tasks[::3]:
        task.cancel()
    for i, task in enumerate(tasks):
        if i % 3:
            assert await task == [f"w{i}".encode()]
    assert await lookups.mget(["q:7"]) == [b"w7"]


async def test_a_killed_connection_is_dropped_and_the_next_lookup_reconnects(
    lookups: PipelinedLookups, admin: Redis
) -> None:
    await admin.set("k", "1")
    assert await lookups.mget(["k"]) == [b"1"]
    ours = [c["id"] for c in await admin.client_list() if c["name"] == "pipelined-test"]
    assert len(ours) == 1
    assert await admin.client_kill_filter(_id=ours[0]) == 1
    await asyncio.sleep(0.05)  # the reader sees the EOF and drops the connection
    assert lookups._conn is None  # noqa: SLF001
    assert await lookups.mget(["k"]) == [b"1"]


async def test_a_server_that_stops_answering_is_a_timeout_within_two_intervals(
    lookups: PipelinedLookups, admin: Redis
) -> None:
    await admin.set("t", "2")
    assert await lookups.mget(["t"]) == [b"2"]
    await admin.client_pause(1000, all=True)
    start = time.monotonic()
    with pytest.raises(RedisTimeoutError):
        await lookups.mget(["t"])
    waited = time.monotonic() - start
    await admin.client_unpause()
    assert waited < 0.9, f"the watchdog took {waited:.2f}s, not about 0.05-0.1 s"
    assert await lookups.mget(["t"]) == [b"2"]


async def test_the_cache_uses_them_unless_switched_off(redis_server: Proc) -> None:
    url = f"redis://{LOOPBACK}:{redis_server.port}/0"
    on = RedisCache.from_settings(Redis.from_url(url), Settings(redis_url=url))
    off = RedisCache.from_settings(
        Redis.from_url(url), Settings(redis_url=url, redis_pipelined_lookups=False)
    )
    try:
        await on.set_many([("pl:a", b"x")], 60)
        assert await on.get_many(["pl:a", "pl:b"]) == await off.get_many(["pl:a", "pl:b"])
        assert await on.get_many(["pl:a"]) == [b"x"]
        assert on._lookups is not None and off._lookups is None  # noqa: SLF001
    finally:
        await on.close()
        await off.close()


async def test_writes_share_the_connection_keep_their_expiry_and_order_with_lookups(
    lookups: PipelinedLookups, admin: Redis
) -> None:
    writes = [
        lookups.set_many([(f"s:{i}:{j}", b"x%d" % j) for j in range(3)], 77) for i in range(40)
    ]
    reads = [lookups.mget([f"s:{i}:0", f"s:{i}:2"]) for i in range(40)]
    await asyncio.gather(*writes)
    assert await asyncio.gather(*reads) == [[b"x0", b"x2"]] * 40  # written first, read after
    assert 70 <= await admin.ttl("s:39:1") <= 77


async def test_a_refused_write_raises(lookups: PipelinedLookups, admin: Redis) -> None:
    policy = (await admin.config_get("maxmemory-policy"))["maxmemory-policy"]
    await admin.config_set("maxmemory-policy", "noeviction")
    await admin.config_set("maxmemory", 1)
    try:
        with pytest.raises(ResponseError, match="OOM"):
            await lookups.set_many([("oom:a", b"1"), ("oom:b", b"2")], 60)
        assert await lookups.mget(["oom:a"]) == [None]  # and the connection still works
    finally:
        await admin.config_set("maxmemory", 0)
        await admin.config_set("maxmemory-policy", policy)
