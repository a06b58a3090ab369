"""The shared Redis cache of the configured mode: a single URL, Sentinel, or Redis Cluster."""

from __future__ import annotations

from service.cache.cluster import ClusterCache, build_cluster
from service.cache.redis import RedisCache, build_redis
from service.settings import Settings


def connect_redis(settings: Settings) -> RedisCache | None:
    """The cache on the one Redis mode Settings allow; None when none is configured."""
    if settings.redis_cluster_nodes:
        return ClusterCache.from_settings(build_cluster(settings), settings)
    client = build_redis(settings)
    return RedisCache.from_settings(client, settings) if client is not None else None
