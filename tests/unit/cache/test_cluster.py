"""The cluster mode: its client carries the same user, password, TLS and fail-fast timeouts
as the other modes, the configured mode picks the cache, and a lookup spans every primary."""

from __future__ import annotations

from redis.asyncio.connection import SSLConnection

from devtools.localstack.redis_cluster import RedisClusterProcs
from service.cache.cluster import ClusterCache, build_cluster
from service.cache.connect import connect_redis
from service.cache.keys import KeySpace
from service.cache.redis import RedisCache
from service.settings import Settings
from tests.unit.cache.test_redis_client import TLS, VERIFIED


def test_cluster_nodes_get_the_user_password_tls_and_timeouts() -> None:
    settings = Settings(
        redis_cluster_nodes="c1:7000,c2:7001",
        redis_username="memoserve",
        redis_password="p",
        redis_tls=True,
        **TLS,
    )
    client = build_cluster(settings)
    assert [(n.host, n.port) for n in client.startup_nodes] == [("c1", 7000), ("c2", 7001)]
    for node in client.startup_nodes:
        found = node.connection_kwargs
        assert (found["username"], found["password"]) == ("memoserve", "p")
        assert issubclass(node.connection_class, SSLConnection)
        assert found["ssl_cert_reqs"] == "required" and found["ssl_check_hostname"] is True
        assert VERIFIED.items() <= found.items()
        assert (found["socket_timeout"], found["socket_connect_timeout"]) == (0.05, 0.05)
    assert client.retry.get_retries() == settings.redis_retries


def test_the_configured_mode_picks_the_cache() -> None:
    assert type(connect_redis(Settings(redis_cluster_nodes="c1:7000"))) is ClusterCache
    assert type(connect_redis(Settings(redis_url="redis://r:6379"))) is RedisCache
    assert connect_redis(Settings()) is None


async def test_a_batch_spread_over_every_primary_comes_back_in_order(
    redis_cluster: RedisClusterProcs, keys: KeySpace
) -> None:
    settings = Settings(redis_cluster_nodes=redis_cluster.nodes, redis_socket_timeout_ms=2000)
    cache = ClusterCache.from_settings(build_cluster(settings), settings)
    try:
        rows = KeySpace.rows(keys.row_prefix("m", "1", "predict"), (b"%d" % i for i in range(64)))
        stored = rows[::2]
        await cache.set_many([(k, k.encode()) for k in stored], 60)
        found = await cache.get_many(rows)
        assert found == [k.encode() if k in stored else None for k in rows]
        # The layout spreads a version's rows (no hash tag): every primary holds some.
        nodes = {cache.client.get_node_from_key(k).name for k in rows}
        assert len(nodes) == redis_cluster.primaries
    finally:
        await cache.close()
