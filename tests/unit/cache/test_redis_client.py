"""build_redis passes the ACL user, passwords and TLS options to every connection it makes."""

from __future__ import annotations

from typing import Any

from redis.asyncio.connection import SSLConnection

from service.cache.redis import build_redis
from service.settings import Settings

TLS = {"redis_tls_ca_file": "/ca.pem", "redis_tls_cert_file": "/c.pem", "redis_tls_key_file": "/k"}
VERIFIED = {"ssl_ca_certs": "/ca.pem", "ssl_certfile": "/c.pem", "ssl_keyfile": "/k"}


def kwargs(client: Any) -> dict[str, Any]:
    return dict(client.connection_pool.connection_kwargs)


def test_url_mode_follows_rediss_and_verifies() -> None:
    client = build_redis(
        Settings(redis_url="rediss://r:6380", redis_username="u", redis_password="p", **TLS)
    )
    assert client is not None
    assert issubclass(client.connection_pool.connection_class, SSLConnection)
    found = kwargs(client)
    assert found["username"] == "u" and found["password"] == "p"
    assert found["ssl_cert_reqs"] == "required" and found["ssl_check_hostname"] is True
    assert VERIFIED.items() <= found.items()


def test_a_plain_url_keeps_its_own_credentials() -> None:
    client = build_redis(Settings(redis_url="redis://u2:p2@r:6379"))
    assert client is not None
    found = kwargs(client)
    assert (found["username"], found["password"]) == ("u2", "p2")
    assert "ssl_ca_certs" not in found


def test_sentinel_mode_secures_master_and_sentinels_separately() -> None:
    settings = Settings(
        redis_sentinels="s1:26379",
        redis_username="memoserve",
        redis_password="p",
        redis_sentinel_username="watcher",
        redis_sentinel_password="sp",
        redis_tls=True,
        redis_sentinel_tls=True,
        **TLS,
    )
    client = build_redis(settings)
    assert client is not None
    master = kwargs(client)
    assert (master["username"], master["password"]) == ("memoserve", "p")
    assert issubclass(client.connection_pool.connection_class, SSLConnection)
    assert VERIFIED.items() <= master.items()
    (sentinel,) = client.connection_pool.sentinel_manager.sentinels
    found = kwargs(sentinel)
    assert (found["username"], found["password"]) == ("watcher", "sp")
    assert issubclass(sentinel.connection_pool.connection_class, SSLConnection)
    assert VERIFIED.items() <= found.items()


def test_sentinels_without_tls_stay_plain() -> None:
    client = build_redis(Settings(redis_sentinels="s1:26379", redis_tls=True))
    assert client is not None
    (sentinel,) = client.connection_pool.sentinel_manager.sentinels
    assert not issubclass(sentinel.connection_pool.connection_class, SSLConnection)
