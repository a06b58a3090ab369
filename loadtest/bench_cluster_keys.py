"""Key layout on Redis Cluster, measured with the service's own cache classes (no HTTP):

  lookup  32-row batch lookups through ``ClusterCache.get_many`` (mget_nonatomic: one MGET per
          slot, pipelined per node), a hand-made pipeline of GETs, and one MGET of keys that
          share a ``{model:version}`` hash tag; and a Sentinel master's MGET for reference
  spread  how a version's keys fall over the primaries in each layout
  purge   ``purge_version`` of --keys rows (SCAN per primary + UNLINK) on the cluster and on
          the Sentinel master

Prints the median of --rounds runs. Loopback only."""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path

from redis.asyncio import Redis

from devtools.localstack.processes import LOOPBACK, SentinelCluster
from devtools.localstack.redis_cluster import RedisClusterProcs
from service.cache.breaker import CircuitBreaker
from service.cache.cluster import ClusterCache, build_cluster
from service.cache.keys import KeySpace
from service.cache.redis import RedisCache
from service.promotion.purge import purge_version
from service.settings import Settings

BATCH = 32


async def lookups(get, batches: list[list[str]]) -> float:  # type: ignore[no-untyped-def]
    """Batches per second of ``get`` over ``batches``, 8 at a time."""
    start = time.perf_counter()
    for i in range(0, len(batches), 8):
        await asyncio.gather(*(get(b) for b in batches[i : i + 8]))
    return len(batches) / (time.perf_counter() - start)


async def seed(cache: RedisCache, keys: list[str]) -> None:
    for i in range(0, len(keys), 2000):
        await cache.set_many([(k, b"[1]") for k in keys[i : i + 2000]], 600)


async def measure(cluster: ClusterCache, sentinel: RedisCache, n_keys: int) -> dict[str, float]:
    ks = KeySpace("bench")
    prefix = ks.row_prefix("iris", "1", "predict")
    spread = KeySpace.rows(prefix, (str(i).encode() for i in range(4096)))
    tagged = [k.replace("bench:row:iris:1:", "bench:row:{iris:1}:") for k in spread]
    await seed(cluster, spread)
    await seed(cluster, tagged)
    await seed(sentinel, spread)
    batches = [spread[i : i + BATCH] for i in range(0, len(spread), BATCH)]
    tagged_batches = [tagged[i : i + BATCH] for i in range(0, len(tagged), BATCH)]
    rc = cluster.client

    async def pipelined_gets(batch: list[str]) -> list[bytes | None]:
        async with rc.pipeline(transaction=False) as pipe:
            for key in batch:
                pipe.get(key)
            return await pipe.execute()  # type: ignore[no-any-return]

    out = {
        "cluster mget_nonatomic": await lookups(cluster.get_many, batches),
        "cluster pipelined GETs": await lookups(pipelined_gets, batches),
        "cluster one-tag MGET": await lookups(lambda b: rc.mget(b), tagged_batches),
        "sentinel MGET": await lookups(sentinel.get_many, batches),
    }
    nodes = Counter(rc.get_node_from_key(k).name for k in spread)
    out["spread: keys on busiest primary %"] = 100 * max(nodes.values()) / len(spread)
    out["one tag: keys on busiest primary %"] = 100.0
    await rc.unlink(*tagged)
    for name, cache in (("cluster", cluster), ("sentinel", sentinel)):
        version = f"p{time.monotonic_ns()}"
        prefix = ks.row_prefix("iris", version, "predict")
        rows = KeySpace.rows(prefix, (str(i).encode() for i in range(n_keys)))
        await seed(cache, rows)
        start = time.perf_counter()
        purged = await purge_version(cache, ks, "iris", version, batch=500, attempt="bench")
        elapsed = time.perf_counter() - start
        assert purged == n_keys, (name, purged)
        out[f"{name} purge keys/s"] = n_keys / elapsed
    return out


async def run(args: argparse.Namespace, cluster_nodes: str, master_port: int) -> None:
    # A deployment keeps 50 ms timeouts; bulk seeding on a busy 2-core machine needs more.
    settings = Settings(
        redis_cluster_nodes=cluster_nodes,
        redis_socket_timeout_ms=5000,
        redis_connect_timeout_ms=5000,
    )
    generous = CircuitBreaker(10_000, 1.0)
    cluster = ClusterCache(build_cluster(settings), generous, deadline_seconds=30)
    sentinel = RedisCache(
        Redis(host=LOOPBACK, port=master_port, socket_timeout=5),
        CircuitBreaker(10_000, 1.0),
        deadline_seconds=30,
    )
    runs = [await measure(cluster, sentinel, args.keys) for _ in range(args.rounds)]
    await cluster.close()
    await sentinel.close()
    print(f"median of {args.rounds} rounds ({BATCH}-row batches, {args.keys} keys purged):")
    for name in runs[0]:
        print(f"  {name:38s} {statistics.median(r[name] for r in runs):12.1f}")
    med = {name: statistics.median(r[name] for r in runs) for name in runs[0]}
    lookup = med["cluster mget_nonatomic"] / med["sentinel MGET"]
    purge = med["cluster purge keys/s"] / med["sentinel purge keys/s"]
    print(f"  {'lookup ratio cluster/sentinel':38s} {lookup:12.2f}")
    print(f"  {'purge ratio cluster/sentinel':38s} {purge:12.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--keys", type=int, default=100_000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="memoserve-cluster-keys-"))
    cluster = RedisClusterProcs(work / "cluster").start()
    sentinel = SentinelCluster(work / "sentinel")
    try:
        sentinel.start()
        asyncio.run(run(args, cluster.nodes, sentinel.current_master_port()))
    finally:
        sentinel.stop()
        cluster.stop()


if __name__ == "__main__":
    main()
