"""Redis-hit throughput (L1 off) on Sentinel and on Redis Cluster in the same run, then a purge
of --keys rows on each; prints medians of --rounds and the cluster/Sentinel ratios.

Both memoserve servers (1 worker each) run at once and wrk alternates between them within a
round, so the machine's noise falls on both alike. Requests: one row (one key: one node), and
32 rows (keys on every primary). The purge is ``purge_version`` (SCAN + UNLINK, every primary
of the cluster) through the service's own cache classes, run while wrk sends 1-row hits to that
backend's memoserve in 1 s slices: the hits' p99 before and during the purge is its cost to
serving. Loopback only."""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import skops.io
from redis.asyncio import Redis

from devtools.localstack.processes import LOOPBACK, SentinelCluster
from devtools.localstack.redis_cluster import RedisClusterProcs
from loadtest.common import gunicorn, median, save_results, wrk
from memoserve_models import demo
from service.cache.breaker import CircuitBreaker
from service.cache.cluster import ClusterCache, build_cluster
from service.cache.keys import KeySpace
from service.cache.redis import RedisCache
from service.promotion.purge import purge_version
from service.settings import Settings

APP = "service.app:create_app()"
BACKENDS = ("sentinel", "cluster")


def body(rows: int) -> str:
    data = [[4.0 + i / 100, 3.0, 1.5, 0.2] for i in range(rows)]
    return json.dumps({"dataframe_split": {"columns": demo.IRIS_FEATURES, "data": data}})


def hits(args: argparse.Namespace, urls: dict[str, str]) -> dict[str, dict[str, list[float]]]:
    """req/s and p99 of each backend and request size, per round."""
    out: dict[str, dict[str, list[float]]] = {}
    for rows in (1, 32):
        post = {
            "method": "POST",
            "body": body(rows),
            "headers": {"Content-Type": "application/json"},
        }
        for url in urls.values():
            wrk(url + "/invocations", seconds=1, connections=4, **post)  # fill the cache
        for _ in range(args.rounds):
            for backend, url in urls.items():
                result = wrk(url + "/invocations", seconds=args.seconds, connections=16, **post)
                if result.errors:
                    raise SystemExit(f"{backend}: {result.errors} failed requests")
                case = out.setdefault(f"{backend} {rows}-row", {"rps": [], "p99": []})
                case["rps"].append(result.rps)
                case["p99"].append(result.p99_ms)
    return out


async def purges(
    args: argparse.Namespace, caches: dict[str, RedisCache], urls: dict[str, str]
) -> dict[str, dict[str, list[float]]]:
    """Per backend and round: keys/s of purging --keys rows while that backend's memoserve
    serves 1-row hits, and the hits' p99 before and during the purge."""
    ks = KeySpace("bench-purge")
    post = {"method": "POST", "body": body(1), "headers": {"Content-Type": "application/json"}}
    out: dict[str, dict[str, list[float]]] = {}
    for _ in range(args.rounds):
        for name, cache in caches.items():
            version = f"v{time.monotonic_ns()}"
            prefix = ks.row_prefix("iris", version, "predict")
            rows = KeySpace.rows(prefix, (b"%d" % i for i in range(args.keys)))
            for i in range(0, len(rows), 2000):
                await cache.set_many([(k, b"[1]") for k in rows[i : i + 2000]], 3600)
            target = urls[name] + "/invocations"
            before = await asyncio.to_thread(wrk, target, seconds=2, connections=16, **post)
            start = time.perf_counter()
            task = asyncio.create_task(
                purge_version(cache, ks, "iris", version, batch=500, attempt="b")
            )
            ended: list[float] = []
            task.add_done_callback(lambda _, add=ended.append: add(time.perf_counter()))
            during: list[float] = []
            while not task.done():  # 1 s slices of hits until the purge ends
                result = await asyncio.to_thread(wrk, target, seconds=1, connections=16, **post)
                if result.errors:
                    raise SystemExit(f"{name}: {result.errors} failed requests during the purge")
                during.append(result.p99_ms)
            purged = await task
            seconds = ended[0] - start
            assert purged == args.keys, (name, purged)
            case = out.setdefault(name, {"keys_s": [], "seconds": [], "p99": [], "p99_purge": []})
            case["keys_s"].append(args.keys / seconds)
            case["seconds"].append(seconds)
            case["p99"].append(before.p99_ms)
            case["p99_purge"].append(median(during))
    return out


async def purge_all(
    args: argparse.Namespace, nodes: str, master: int, urls: dict[str, str]
) -> dict[str, dict[str, list[float]]]:
    # Serving keeps 50 ms timeouts; bulk seeding on a busy machine needs more.
    settings = Settings(
        redis_cluster_nodes=nodes, redis_socket_timeout_ms=5000, redis_connect_timeout_ms=5000
    )
    caches: dict[str, RedisCache] = {
        "sentinel": RedisCache(
            Redis(host=LOOPBACK, port=master, socket_timeout=5),
            CircuitBreaker(10_000, 1.0),
            deadline_seconds=30,
        ),
        "cluster": ClusterCache(
            build_cluster(settings), CircuitBreaker(10_000, 1.0), deadline_seconds=30
        ),
    }
    try:
        return await purges(args, caches, urls)
    finally:
        for cache in caches.values():
            await cache.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--keys", type=int, default=1_000_000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="memoserve-bench-cluster-"))
    model = work / "iris.skops"
    skops.io.dump(demo.train_iris(), model)
    base = {
        "MEMOSERVE_MODEL_URI": str(model),
        "MEMOSERVE_WORKERS": "1",
        "MEMOSERVE_MODEL_POLL_SECONDS": "0",
        "MEMOSERVE_ACCESS_LOG": "false",
        "MEMOSERVE_L1_ENABLED": "false",
        "MEMOSERVE_TRACING_ENABLED": "false",
    }
    with ExitStack() as stack:
        sentinel = SentinelCluster(work / "sentinel")
        stack.callback(sentinel.stop)
        sentinel.start()
        cluster = RedisClusterProcs(work / "cluster")
        stack.callback(cluster.stop)
        cluster.start()
        envs = {"sentinel": sentinel.client_env(), "cluster": cluster.client_env()}
        urls = {
            name: stack.enter_context(gunicorn(APP, {**base, **env}, work, name))
            for name, env in envs.items()
        }
        hit = hits(args, urls)
        purge = asyncio.run(purge_all(args, cluster.nodes, sentinel.current_master_port(), urls))

    print(f"\nmedians of {args.rounds} rounds (1 worker each, 16 connections, L1 off)")
    print(f"{'case':<18} {'req/s':>9} {'p99 ms':>8}")
    for name, r in hit.items():
        print(f"{name:<18} {median(r['rps']):>9.0f} {median(r['p99']):>8.2f}")
    for name, r in purge.items():
        print(
            f"purge of {args.keys} keys, {name}: {median(r['seconds']):.1f} s, "
            f"{median(r['keys_s']):.0f} keys/s; 1-row hit p99 {median(r['p99']):.2f} ms before, "
            f"{median(r['p99_purge']):.2f} ms during"
        )
    ratios = {
        f"redis-hit rps cluster/sentinel {rows}-row": median(hit[f"cluster {rows}-row"]["rps"])
        / median(hit[f"sentinel {rows}-row"]["rps"])
        for rows in (1, 32)
    }
    ratios["purge keys/s cluster/sentinel"] = median(purge["cluster"]["keys_s"]) / median(
        purge["sentinel"]["keys_s"]
    )
    for name in BACKENDS:
        ratios[f"hit p99 during/before purge {name}"] = median(purge[name]["p99_purge"]) / median(
            purge[name]["p99"]
        )
    for name, ratio in ratios.items():
        print(f"{name}: {ratio:.2f}")
    cases = {**hit, **{f"purge {name}": r for name, r in purge.items()}}
    save_results("bench_cluster", args, cases, ratios=ratios)


if __name__ == "__main__":
    main()
