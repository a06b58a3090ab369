"""The app factory and its lifespan: build each part once, pass it in, close it on shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI

from service.api import health, inference, oip, webhooks
from service.api.errors import HANDLERS
from service.api.fast_path import PredictionFastPath
from service.background import BackgroundTasks
from service.batching import MicroBatcher
from service.cache.base import PredictionCache
from service.cache.connect import connect_redis
from service.cache.hot import HotInputs
from service.cache.keys import KeySpace
from service.cache.memory import MemoryCache
from service.cache.redis import RedisCache
from service.cache.tiered import TieredCache
from service.coalesce import Coalescer, Direct, RedisLockCoalescer, SingleFlight
from service.dataplane import DataPlane
from service.models.arms import Arm, ServedVersions, ServingArms
from service.models.factory import build_source
from service.models.heap import HeapFreezer
from service.models.manager import ModelManager
from service.models.replica_fence import ReplicaFence
from service.models.replica_fence import from_environment as replica_fence_from_environment
from service.models.source import ModelSource
from service.observability.metrics_port import MetricsPortOnly, bind_port
from service.observability.middleware import RequestObservability
from service.observability.tracing import instrument_app
from service.promotion.coordinator import PromotionCoordinator
from service.promotion.deliveries import DeliveryLog
from service.promotion.events import EventBus
from service.promotion.hooks import SwapHooks
from service.promotion.sealed import events_key
from service.settings import CoalesceMode, Settings
from service.shadow import ShadowCopies

log = logging.getLogger(__name__)


def build_caches(
    settings: Settings,
) -> tuple[PredictionCache, MemoryCache | None, RedisCache | None]:
    """The shared cache, the optional L1 near-cache, and Redis (None when the shared cache is
    in-process, with a warning: locks, pub/sub, hot rows and purges then have no home)."""
    redis = connect_redis(settings)
    if redis is None:
        log.warning(
            "NO REDIS CONFIGURED: predictions are cached in-process only, not shared between "
            "replicas or workers. Set MEMOSERVE_REDIS_SENTINELS, MEMOSERVE_REDIS_CLUSTER_NODES "
            "or MEMOSERVE_REDIS_URL."
        )
        return MemoryCache(settings.memory_cache_max_entries), None, None
    l1 = None
    if settings.l1_enabled:
        l1 = MemoryCache(
            settings.l1_max_entries, max_ttl_seconds=settings.l1_ttl_seconds, layer="l1"
        )
    return redis, l1, redis


def build_coalescer(
    settings: Settings, redis: RedisCache | None, keys: KeySpace, background: BackgroundTasks
) -> Coalescer:
    """``off``, ``local`` (single-flight), or ``distributed`` (single-flight, then Redis locks;
    ``local`` when there is no Redis)."""
    if settings.coalesce is CoalesceMode.OFF:
        return Direct()
    if settings.coalesce is CoalesceMode.DISTRIBUTED and redis is not None:
        lock_ms, wait_ms = settings.coalesce_lock_ms, settings.coalesce_wait_ms
        locks = RedisLockCoalescer(redis, keys, background, lock_ms=lock_ms, wait_ms=wait_ms)
        return SingleFlight(locks)
    return SingleFlight(Direct())


def arm_sources(settings: Settings, champion: ModelSource) -> dict[Arm, ModelSource]:
    """The champion's source and, for each alias the settings name, the same model under it."""
    sources = {Arm.CHAMPION: champion}
    if settings.model_canary_alias:
        sources[Arm.CANARY] = champion.for_alias(settings.model_canary_alias)
    if settings.model_shadow_alias:
        sources[Arm.SHADOW] = champion.for_alias(settings.model_shadow_alias)
    return sources


def build_arms(
    settings: Settings,
    sources: dict[Arm, ModelSource],
    hooks_for: Callable[[Arm, ModelSource], SwapHooks],
    freezer: HeapFreezer,
) -> tuple[ServingArms, list[SwapHooks], list[ReplicaFence]]:
    """One ModelManager per arm, each with its own hooks and replica fence."""
    managers: dict[Arm, ModelManager] = {}
    all_hooks, fences = [], []
    for arm, arm_source in sources.items():
        hooks = hooks_for(arm, arm_source)
        fence = replica_fence_from_environment(arm.value)
        managers[arm] = ModelManager(
            arm_source,
            replica_fence=fence,
            poll_seconds=settings.model_poll_seconds,
            retry_max_seconds=settings.model_load_retry_max_seconds,
            catch_up_seconds=settings.model_load_wait_seconds,
            before_load=hooks.before_load,
            before_swap=hooks.before_swap,
            after_swap=(*hooks.after_swap, freezer.after_swap),
            arm=arm.value,
        )
        all_hooks.append(hooks)
        fences += [fence] if fence is not None else []
    arms = ServingArms(
        managers[Arm.CHAMPION],
        canary=managers.get(Arm.CANARY),
        shadow=managers.get(Arm.SHADOW),
        canary_percent=settings.model_canary_percent,
    )
    return arms, all_hooks, fences


def build_batcher(settings: Settings, *, threads: int, max_queued_rows: int) -> MicroBatcher:
    """A micro-batcher with the settings' batch size and deadline."""
    return MicroBatcher(
        max_rows=settings.batch_max_rows,
        max_wait_seconds=settings.batch_max_wait_ms / 1000,
        threads=threads,
        timeout_seconds=settings.predict_timeout_seconds,
        max_queued_rows=max_queued_rows,
    )


def create_app(settings: Settings | None = None, *, source: ModelSource | None = None) -> FastAPI:
    """A memoserve ASGI app; nothing is connected until its lifespan starts. ``source``
    replaces the model source ``MEMOSERVE_MODEL_URI`` names (tests, embedding)."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        keys = KeySpace(settings.namespace)
        background = BackgroundTasks("cache write")
        shared, l1, redis = build_caches(settings)
        background_redis = redis.sibling() if redis is not None else None
        cache = TieredCache(shared, l1, background, ttl_seconds=settings.cache_ttl_seconds)
        hot = None
        if background_redis is not None and settings.warmup_top_k > 0:
            rate, bound = settings.hot_sample_rate, settings.hot_max_entries
            hot = HotInputs(background_redis, background, rate=rate, max_entries=bound)
        bus = None
        if background_redis is not None and settings.events_enabled:
            bus = EventBus(
                background_redis,
                keys.events,
                key=events_key(settings.webhook_secret.get_secret_value()),
                tolerance_seconds=settings.webhook_tolerance_seconds,
            )
        model_source = source or build_source(settings)
        freezer = HeapFreezer()
        served = ServedVersions()

        def hooks_for(arm: Arm, arm_source: ModelSource) -> SwapHooks:
            return SwapHooks(
                settings,
                keys,
                cache,
                redis=background_redis,
                bus=bus,
                hot=hot,
                registry_name=arm_source.registry_name,
                alias=arm_source.alias,
                arm=arm,
                served=served,
            )

        arms, all_hooks, fences = build_arms(
            settings, arm_sources(settings, model_source), hooks_for, freezer
        )
        batcher = build_batcher(
            settings, threads=settings.predict_threads, max_queued_rows=settings.max_queued_rows
        )
        # The shadow has a batcher and thread of its own: its copies never queue ahead of a
        # request's misses, and its bound drops them before they grow.
        shadow_batcher, shadow = None, None
        if Arm.SHADOW in arms.managers:
            pending = settings.shadow_max_pending
            shadow_batcher = build_batcher(settings, threads=1, max_queued_rows=pending)
            shadow = ShadowCopies(shadow_batcher.submit, max_pending=pending)
        app.state.dataplane = DataPlane(
            arms,
            cache,
            build_coalescer(settings, redis, keys, background),
            batcher,
            keys,
            hot=hot,
            shadow=shadow,
            default_output=settings.model_output,
            max_rows=settings.max_rows,
            max_body_bytes=settings.max_body_bytes,
        )
        deliveries = DeliveryLog(
            background_redis, keys, tolerance_seconds=settings.webhook_tolerance_seconds
        )
        app.state.promotion = promotion = PromotionCoordinator(arms, bus, deliveries)
        batcher.start()
        if shadow_batcher is not None:
            shadow_batcher.start()
        promotion.start()
        arms.start()
        # A worker accepts connections once its lifespan has started. Waiting for the first
        # load here keeps a worker of an already-ready pod from answering 503; if the registry
        # is down past the wait, the worker serves anyway and stays unready (/readyz) until loaded.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(arms.champion.loaded.wait(), settings.model_load_wait_seconds)
        try:
            yield
        finally:
            await arms.stop()
            await promotion.stop()
            for hooks in all_hooks:
                await hooks.stop()
            await freezer.stop()
            if shadow is not None:
                await shadow.stop()
            await batcher.stop()
            if shadow_batcher is not None:
                await shadow_batcher.stop()
            await background.drain()
            await shared.close()
            for fence in fences:
                fence.close()

    app = FastAPI(
        title="memoserve",
        summary="ML predictions from a shared, version-keyed cache.",
        version="0.1.0",
        lifespan=lifespan,
        exception_handlers=HANDLERS,
        # Tracing is ours (service.observability.tracing); FastAPI's native telemetry would add
        # a second server span and per-request work whenever a tracer provider is installed.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.settings = settings
    app.include_router(inference.router)
    app.include_router(oip.router)
    app.include_router(health.router)
    app.include_router(webhooks.router)
    app.add_middleware(PredictionFastPath, routes=inference.router.routes)  # innermost of ours
    if settings.metrics_bind:  # inside the access log, which then records its 404s
        app.add_middleware(MetricsPortOnly, port=bind_port(settings.metrics_bind))
    app.add_middleware(RequestObservability, access_log=settings.access_log)
    if settings.tracing_enabled:
        instrument_app(app)
    return app
