"""What memoserve wrote to a Redis master (or to every primary of a cluster), found through the
service's own KeySpace."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

import orjson
import redis

from devtools.localstack.processes import LOOPBACK, RedisSecurity, wait_until
from service.cache.keys import KeySpace


class RedisBackend(Protocol):
    """Redis processes a test started: SentinelCluster or RedisClusterProcs."""

    security: RedisSecurity

    def client_env(self) -> dict[str, str]: ...

    def data_ports(self) -> list[int]: ...


def _node(cluster: RedisBackend, port: int) -> redis.Redis:
    return redis.Redis(LOOPBACK, port, socket_timeout=2, **cluster.security.client())


def master_keys(cluster: RedisBackend, pattern: str) -> list[bytes]:
    """Keys matching ``pattern`` on the current master, or on every primary."""
    found: list[bytes] = []
    for port in cluster.data_ports():
        with _node(cluster, port) as r:
            found += r.scan_iter(match=pattern)
    return found


def master_ttl(cluster: RedisBackend, key: bytes) -> int:
    """Seconds to live of ``key`` where it lives (-1: no expiry, -2: absent)."""
    ttl = -2
    for port in cluster.data_ports():
        with _node(cluster, port) as r:
            try:
                ttl = int(r.ttl(key))
            except redis.ResponseError:  # MOVED: another primary's slot
                continue
            if ttl != -2:
                return ttl
    return ttl


def row_entries(
    cluster: RedisBackend, keys: KeySpace, model: str, version: str = "*", output: str = "*"
) -> list[bytes]:
    """Cached rows of ``model`` (any version or output unless named)."""
    return master_keys(cluster, keys.row_prefix(model, version, output) + "*")


def version_keys(cluster: RedisBackend, keys: KeySpace, model: str, version: str) -> list[bytes]:
    """Every key a purge of ``model``/``version`` must remove: its rows and hot sets."""
    hot = master_keys(cluster, keys.hot(model, version, "*"))
    return master_keys(cluster, keys.version_pattern(model, version)) + hot


@contextmanager
def published(cluster: RedisBackend, channel: str) -> Iterator[Callable[[], list[Any]]]:
    """Subscribed to ``channel`` on the current master (or a primary: a cluster broadcasts):
    yields a function that returns every message published there since, decoded (the event of
    a signed one), in the order Redis delivered them."""
    with _node(cluster, cluster.data_ports()[0]) as client:
        pubsub = client.pubsub()
        pubsub.subscribe(channel)
        wait_until(
            lambda: (m := pubsub.get_message(timeout=0.1)) is not None and m["type"] == "subscribe",
            5,
            f"the subscription to {channel}",
        )
        heard: list[Any] = []

        def messages() -> list[Any]:
            while (m := pubsub.get_message(timeout=0.01)) is not None:
                if m["type"] == "message":
                    message = orjson.loads(m["data"])  # signed: {"event": ..., "ts", "sig"}
                    heard.append(message.get("event", message))
            return list(heard)

        try:
            yield messages
        finally:
            pubsub.close()
