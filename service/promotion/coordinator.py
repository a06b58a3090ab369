"""Wires promotion into one worker: webhook and pub/sub trigger a refresh; swaps warm and purge."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

from service.dataplane import DataPlane
from service.errors import CacheUnavailable, RegistryUnavailable
from service.models.loaded import LoadedModel
from service.models.manager import ModelManager
from service.promotion.events import EventBus
from service.promotion.purge import active_key, purge_version
from service.promotion.warmup import HotInputs, warm
from service.settings import Settings

log = logging.getLogger(__name__)

ALIAS_EVENT = ("model_version_alias", "created")


class Promotion:
    """The three paths (webhook → pub/sub → every worker; poll in the manager) and swap hooks."""

    def __init__(self, settings: Settings, manager: ModelManager, dataplane: DataPlane) -> None:
        self.settings = settings
        self.manager = manager
        self.dataplane = dataplane
        redis = dataplane.redis
        self.bus: EventBus | None = None
        if redis is not None and settings.events_enabled:
            self.bus = EventBus(redis, f"{settings.namespace}:events", self._on_event)
        self.hot: HotInputs | None = None
        if redis is not None and settings.warmup_top_k > 0:
            self.hot = HotInputs(
                redis,
                settings.namespace,
                rate=settings.hot_sample_rate,
                max_entries=settings.hot_max_entries,
            )
            dataplane.hot = self.hot
        manager.before_swap.append(self._warm)
        manager.before_swap.append(self._announce)  # last: right before the swap itself
        manager.after_swap.append(self._after_swap)
        self._tasks: set[asyncio.Task[Any]] = set()

    def start(self) -> None:
        """Subscribe to the event channel."""
        if self.bus is not None:
            self.bus.start()

    async def stop(self) -> None:
        """Unsubscribe and cancel pending refreshes and purges."""
        if self.bus is not None:
            await self.bus.stop()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def on_webhook(self, payload: dict[str, Any]) -> str:
        """A verified MLflow delivery: tell every worker, then refresh here. The alias is re-read
        from MLflow by each refresh; the payload only says which model to look at."""
        if (payload.get("entity"), payload.get("action")) != ALIAS_EVENT:
            return "ignored: not a model_version_alias.created event"
        data = payload.get("data") or {}
        source = self.manager.source
        if data.get("name") != source.registry_name or data.get("alias") != source.alias:
            return "ignored: another model or alias"
        # The registry, not the payload, says which version the alias names now. Unreachable,
        # the delivery fails (5xx, so MLflow's log shows it) and the poll catches up later.
        try:
            version = await asyncio.to_thread(source.resolve)
        except Exception as exc:
            raise RegistryUnavailable(f"could not re-read the alias: {exc}") from exc
        if self.bus is not None:
            await self.bus.publish({"type": "alias_changed", "model": data["name"],
                                    "alias": data["alias"], "version": version})  # fmt: skip
        self._spawn(self.manager.refresh("webhook"))
        return "accepted"

    async def _on_event(self, event: dict[str, Any]) -> None:
        name = self.manager.source.registry_name
        if name is None or event.get("model") != name:
            return
        if event.get("type") == "alias_changed":
            self._spawn(self.manager.refresh("pubsub"))
        elif event.get("type") == "serving" and isinstance(event.get("version"), str):
            self.manager.served_elsewhere(event["version"])

    async def _announce(self, old: LoadedModel | None, new: LoadedModel) -> None:
        """Tell the other workers, before this one answers with ``new``, that it is about to."""
        name = self.manager.source.registry_name
        if self.bus is None or name is None or old is None or old.version == new.version:
            return
        await self.bus.publish({"type": "serving", "model": name, "version": new.version})

    async def _warm(self, old: LoadedModel | None, new: LoadedModel) -> None:
        if self.hot is None or old is None or old.version == new.version:
            return
        warmed = await warm(
            self.hot,
            old,
            new,
            top_k=self.settings.warmup_top_k,
            ttl_seconds=self.settings.cache_ttl_seconds,
            max_rows=self.settings.batch_max_rows,
        )
        log.info("warmed %d hot rows of version %s on version %s", warmed, old.version,
                 new.version)  # fmt: skip

    async def _after_swap(self, old: LoadedModel | None, new: LoadedModel) -> None:
        ns = self.settings.namespace
        redis = self.dataplane.redis
        if redis is not None:
            # It expires like every entry: an abandoned namespace leaves nothing behind, and the
            # purge's rollback check only needs it around a promotion, right after it is written.
            active, ttl = active_key(ns, new.name), self.settings.cache_ttl_seconds
            try:
                await redis.run(lambda r: r.set(active, new.version.encode(), ex=ttl))
            except CacheUnavailable:
                pass
        if old is None or old.version == new.version:
            return
        if self.dataplane.l1 is not None:
            self.dataplane.l1.delete_prefix(f"{ns}:{old.name}:{old.version}:")
        if redis is not None and self.settings.purge_enabled:
            batch = self.settings.purge_batch_size
            self._spawn(purge_version(redis, ns, old.name, old.version, batch=batch,
                                      attempt="swap"))  # fmt: skip
            # A straggler still on the old version may write after the first pass: sweep again
            # once every replica must have switched (two poll intervals), then the TTL bounds it.
            later = max(2 * self.settings.model_poll_seconds, 5.0)
            self._spawn(self._purge_later(later, old, batch))

    async def _purge_later(self, delay: float, old: LoadedModel, batch: int) -> None:
        await asyncio.sleep(delay)
        redis = self.dataplane.redis
        if redis is not None:
            await purge_version(redis, self.settings.namespace, old.name, old.version,
                                batch=batch, attempt="sweep")  # fmt: skip

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            log.warning("promotion task failed: %s: %s", type(exc).__name__, exc)
