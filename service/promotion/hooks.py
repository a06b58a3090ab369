"""What one worker does around a swap: warm the new version, announce it to sibling workers,
publish it active, forget the old version's near-cache entries and purge it from Redis."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from service.background import BackgroundTasks
from service.cache.hot import HotInputs
from service.cache.keys import KeySpace
from service.cache.redis import RedisCache
from service.cache.tiered import TieredCache
from service.errors import CacheUnavailable
from service.models.arms import Arm, ServedVersions
from service.models.loaded import LoadedModel
from service.models.manager import LoadHook, SwapHook
from service.promotion.events import EventBus
from service.promotion.purge import purge_version, served_versions, still_served
from service.promotion.warmup import warm
from service.settings import Settings

log = logging.getLogger(__name__)


class SwapHooks:
    """``before_swap`` and ``after_swap`` of the ModelManager of one arm of a worker."""

    def __init__(
        self,
        settings: Settings,
        keys: KeySpace,
        cache: TieredCache,
        *,
        redis: RedisCache | None,
        bus: EventBus | None,
        hot: HotInputs | None,
        registry_name: str | None,
        alias: str | None = None,
        arm: Arm = Arm.CHAMPION,
        served: ServedVersions | None = None,
    ) -> None:
        self.settings = settings
        self.alias = alias
        self.arm = arm
        self.served = served or ServedVersions()
        self.keys = keys
        self.cache = cache
        self.redis = redis
        self.bus = bus
        self.hot = hot
        self.registry_name = registry_name
        self._purges = BackgroundTasks("purge")

    @property
    def before_load(self) -> tuple[LoadHook, ...]:
        """Tell sibling workers to load too."""
        return (self.announce_load,)

    @property
    def before_swap(self) -> tuple[SwapHook, ...]:
        """Warm, then announce: the announcement goes out right before the swap itself."""
        return (self.warm, self.announce)

    @property
    def after_swap(self) -> tuple[SwapHook, ...]:
        """Record and publish the new version, drop the old one."""
        return (self.served.recorder(self.arm), self.retire)

    async def stop(self) -> None:
        """Cancel pending purges (the TTL bounds what they leave)."""
        await self._purges.cancel()

    async def warm(self, old: LoadedModel | None, new: LoadedModel) -> None:
        """Compute the new version on the old one's hottest rows."""
        if self.hot is None or self.redis is None or old is None or old.version == new.version:
            return
        settings = self.settings
        warmed = await warm(
            self.hot,
            self.redis,
            self.keys,
            old,
            new,
            top_k=settings.warmup_top_k,
            ttl_seconds=settings.cache_ttl_seconds,
            max_rows=settings.batch_max_rows,
        )
        log.info("warmed %d hot rows of version %s on %s", warmed, old.version, new.version)

    async def announce_load(self, old: LoadedModel | None, version: str) -> None:
        """A new version is about to load here: siblings start loading it now, so that when
        this worker swaps and fences them, they are nearly done (the fence's wait is short)."""
        name = self.registry_name
        if self.bus is None or name is None or old is None or old.version == version:
            return
        await self.bus.publish(self._event("loading", name, version))

    async def announce(self, old: LoadedModel | None, new: LoadedModel) -> None:
        """Tell the other workers, before this one answers with ``new``, that it is about to."""
        name = self.registry_name
        if self.bus is None or name is None or old is None or old.version == new.version:
            return
        await self.bus.publish(self._event("serving", name, new.version))

    def _event(self, kind: str, name: str, version: str) -> dict[str, str]:
        # The alias says which arm's workers it concerns; an event without one (a pod from
        # before arms) concerns the champion.
        event = {"type": kind, "model": name, "version": version}
        if self.alias is not None:
            event["alias"] = self.alias
        return event

    async def retire(self, old: LoadedModel | None, new: LoadedModel) -> None:
        """Publish ``new`` as this arm's active version; forget and purge ``old`` unless an
        arm (of this worker, or any replica's ``active`` key) still serves it."""
        redis, ttl = self.redis, self.settings.cache_ttl_seconds
        served: list[bytes | str | None] = list(self._local())
        if redis is not None:
            # It expires like every entry: an abandoned namespace leaves nothing behind, and the
            # purge's rollback check only needs it around a promotion, right after it is written.
            active = self.keys.active(new.name, self.arm.value)
            with contextlib.suppress(CacheUnavailable):
                await redis.run(lambda r: r.set(active, new.version.encode(), ex=ttl))
                served += await served_versions(redis, self.keys, new.name)
        if old is None or old.version == new.version:
            return
        if still_served(old.version, served):
            log.info("keeping version %s's keys: another arm serves it", old.version)
            return
        self.cache.forget(self.keys.version_prefix(old.name, old.version))
        if redis is not None and self.settings.purge_enabled:
            self._purges.spawn(self._purge(redis, old, "swap"))
            # A straggler still on the old version may write after the first pass: sweep again
            # once every replica must have switched (two poll intervals), then the TTL bounds it.
            later = max(2 * self.settings.model_poll_seconds, 5.0)
            self._purges.spawn(self._purge(redis, old, "sweep", delay=later))

    async def _purge(
        self, redis: RedisCache, old: LoadedModel, attempt: str, delay: float = 0.0
    ) -> None:
        if delay:
            await asyncio.sleep(delay)
        batch = self.settings.purge_batch_size
        await purge_version(
            redis,
            self.keys,
            old.name,
            old.version,
            batch=batch,
            attempt=attempt,
            local=self._local,
        )

    def _local(self) -> list[str]:
        """The versions this worker's arms serve (this one's too: it may have rolled back)."""
        return list(self.served.by_arm().values())
