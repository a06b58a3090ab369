"""The cluster mode: its client carries the same user, password, TLS and fail-fast timeouts
as the other modes, and the configured mode picks the cache."""

from __future__ import annotations

from redis.asyncio.connection import SSLConnection

from service.cache.cluster import ClusterCache, build_cluster
from service.cache.connect import connect_redis
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
