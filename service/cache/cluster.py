"""Redis Cluster: the same cache, its keys spread over the primaries by slot.

A lookup is one MGET per slot, pipelined per node and sent to every node at once (redis-py's
``mget_nonatomic``): one round trip per node touched. MOVED and ASK are followed by the client
(it refreshes its slot map); a dead primary is a connection error like any, so the breaker and
the BYPASS work as they do for Sentinel. A scan visits every primary in turn; pub/sub listens
on any node (classic PUBLISH is broadcast to every node)."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Sequence
from functools import partial
from typing import Any, cast

from redis.asyncio import RedisCluster
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import ClusterNode

from service.cache.redis import Client, RedisCache, auth, quick_retry, timeouts, tls
from service.settings import Settings


def build_cluster(settings: Settings) -> RedisCluster:
    """A cluster client that discovers the slots from ``MEMOSERVE_REDIS_CLUSTER_NODES``.

    Slots need not all be covered: while a primary's replica is being promoted, the others'
    keys still serve."""
    nodes = [ClusterNode(host, port) for host, port in settings.cluster_addresses]
    return RedisCluster(
        startup_nodes=nodes,
        require_full_coverage=False,
        retry=quick_retry(settings),
        **auth(settings),
        **tls(settings),
        **timeouts(settings),
    )


class ClusterCache(RedisCache):
    """``RedisCache`` on a ``RedisCluster``: slot-aware lookup and a scan of every primary."""

    async def _mget(self, r: Client, keys: Sequence[str]) -> list[bytes | None]:
        return cast(list[bytes | None], await _cluster(r).mget_nonatomic(keys))

    async def subscriber(self) -> PubSub:
        """Pub/sub on a random node: a PUBLISH reaches every node of the cluster, so any will
        do, and a subscription lost with its node comes back on another one."""
        cluster = await _cluster(self.client).initialize()
        return cluster.pubsub(node=random.choice(cluster.get_nodes()))

    async def scan(self, pattern: str, count: int) -> AsyncIterator[list[bytes]]:
        """Pages of every primary's matching keys; the primaries are those of the slot map
        when the scan starts (a failover meanwhile fails a page: the caller stops there)."""
        cluster = await self.run(lambda r: _cluster(r).initialize())  # the slot map is lazy
        for node in cluster.get_primaries():
            cursor = 0
            while True:
                page = partial(_scan_node, node=node, cursor=cursor, pattern=pattern, count=count)
                cursor, found = await self.run(page)
                yield found
                if cursor == 0:
                    break


def _cluster(r: Client) -> RedisCluster:
    """The client a ``ClusterCache`` was built on (only ever a cluster)."""
    return cast(RedisCluster, r)


async def _scan_node(
    r: Client, node: ClusterNode, cursor: int, pattern: str, count: int
) -> tuple[int, list[bytes]]:
    reply: Any = await _cluster(r).scan(
        cursor=cursor, match=pattern, count=count, target_nodes=node
    )
    cursors, found = reply  # a cluster keys the cursor by node: {name: cursor}
    return int(cursors[node.name]), cast(list[bytes], found)
