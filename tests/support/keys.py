"""What memoserve wrote to a Redis master, found through the service's own KeySpace."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import orjson
import redis

from devtools.localstack.processes import LOOPBACK, SentinelCluster, wait_until
from service.cache.keys import KeySpace


def master_keys(cluster: SentinelCluster, pattern: str) -> list[bytes]:
    """Keys matching ``pattern`` on the current master."""
    with redis.Redis(
        LOOPBACK, cluster.current_master_port(), socket_timeout=2, **cluster.security.client()
    ) as r:
        return list(r.scan_iter(match=pattern))


def master_ttl(cluster: SentinelCluster, key: bytes) -> int:
    """Seconds to live of ``key`` on the current master (-1: no expiry, -2: absent)."""
    with redis.Redis(
        LOOPBACK, cluster.current_master_port(), socket_timeout=2, **cluster.security.client()
    ) as r:
        return int(r.ttl(key))


def row_entries(
    cluster: SentinelCluster, keys: KeySpace, model: str, version: str = "*", output: str = "*"
) -> list[bytes]:
    """Cached rows of ``model`` (any version or output unless named)."""
    return master_keys(cluster, keys.row_prefix(model, version, output) + "*")


def version_keys(cluster: SentinelCluster, keys: KeySpace, model: str, version: str) -> list[bytes]:
    """Every key a purge of ``model``/``version`` must remove: its rows and hot sets."""
    hot = master_keys(cluster, keys.hot(model, version, "*"))
    return master_keys(cluster, keys.version_pattern(model, version)) + hot


@contextmanager
def published(cluster: SentinelCluster, channel: str) -> Iterator[Callable[[], list[Any]]]:
    """Subscribed to ``channel`` on the current master: yields a function that returns every
    message published there since, decoded (the event of a signed one), in the order Redis
    delivered them."""
    with redis.Redis(
        LOOPBACK, cluster.current_master_port(), socket_timeout=2, **cluster.security.client()
    ) as client:
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
