"""Owns the serving model version: first load with backoff, refresh, atomic swap, hooks.

Each gunicorn worker has its own manager, and workers swap independently. So that a client
that got an answer of the new version from one worker never gets one of the old version from
another, a worker announces a swap just before it makes it (``before_swap``, over Redis), and
a worker still on another version that hears of it sets ``fence``: its requests then wait,
bounded, for its own refresh instead of answering with the version being replaced. To keep
that wait short, a worker also announces a load when it starts one (``before_load``), so its
siblings load the new version at the same time rather than after the fence.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable, Sequence

from service.models.loaded import LoadedModel
from service.models.replica_fence import ReplicaFence
from service.models.source import ModelSource
from service.observability import metrics

log = logging.getLogger(__name__)

SwapHook = Callable[[LoadedModel | None, LoadedModel], Awaitable[None]]
LoadHook = Callable[[LoadedModel | None, str], Awaitable[None]]
"""Called with the serving version (None at start-up) and the version about to load."""


class ModelManager:
    """``current`` is swapped as one reference; a request that read it finishes on that version."""

    def __init__(
        self,
        source: ModelSource,
        *,
        poll_seconds: float = 0.0,
        retry_max_seconds: float = 30.0,
        catch_up_seconds: float = 30.0,
        replica_fence: ReplicaFence | None = None,
        before_load: Sequence[LoadHook] = (),
        before_swap: Sequence[SwapHook] = (),
        after_swap: Sequence[SwapHook] = (),
        arm: str = "champion",
    ) -> None:
        self.source = source
        self.arm = arm
        """Which arm this manager loads for (``service.models.arms.Arm``): a metric label."""
        self.poll_seconds = poll_seconds
        self.retry_max_seconds = retry_max_seconds
        self.catch_up_seconds = catch_up_seconds
        self.current: LoadedModel | None = None
        self.replica_fence = replica_fence
        self.before_load = tuple(before_load)
        self.before_swap = tuple(before_swap)
        self.after_swap = tuple(after_swap)
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._catch_up: asyncio.Task[bool] | None = None
        self.loaded = asyncio.Event()
        self.fence: str | None = None
        """A version another worker serves now, when it is not this worker's."""
        self.load_error: str | None = None
        """Why the last load failed (a refused artifact, say), until a load succeeds."""

    @property
    def name(self) -> str:
        """The served model's name."""
        return self.source.name

    def start(self) -> None:
        """Load in the background (the replica stays unready until then), then poll."""
        self._task = asyncio.create_task(self._run(), name="model-manager")

    async def stop(self) -> None:
        """Cancel loading and polling."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def refresh(self, reason: str) -> bool:
        """Load and swap in the version the source names now, if it differs; True if swapped.

        The alias is read under the lock: read before it, a refresh that waited behind a
        slower one could swap back to the version that one replaced."""
        async with self._lock:
            fence = self.fence
            metrics.MODEL_REFRESHES.labels(reason).inc()
            version = await asyncio.to_thread(self.source.resolve)
            if self.current is not None and self.current.version == version:
                if self.fence == fence:  # not announced while we asked: the fence is stale
                    self.fence = None
                shared = self.replica_fence
                if shared is not None and shared.published() not in (None, version):
                    # A sibling serves another version than the one the alias names and we
                    # serve (a rollback overtaken by a promotion): it must fence itself.
                    shared.publish(version)
                return False
            return await self._swap_to(version, reason)

    async def serving(self) -> LoadedModel | None:
        """The version to answer with: ``current``, once caught up when another worker already
        serves a newer one (bounded by ``catch_up_seconds``)."""
        if self.replica_fence is not None:
            version = self.replica_fence.changed()
            if version is not None:
                self.served_elsewhere(version)
        if self.fence is not None:
            await self.catch_up(self.catch_up_seconds)
        return self.current

    def served_elsewhere(self, version: str) -> None:
        """Another worker is switching to ``version``: fence this one until it catches up."""
        if self.current is not None and self.current.version != version:
            self.fence = version

    async def catch_up(self, timeout: float) -> None:
        """Wait up to ``timeout`` for this worker to serve what the alias names (one refresh,
        shared by every waiting request). Past the wait, or if the refresh fails, the worker
        answers with what it has: a prediction is never failed for a registry fault."""
        task = self._catch_up
        if task is None or task.done():
            task = self._catch_up = asyncio.create_task(self.refresh("catch-up"))
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout)
        except TimeoutError:
            log.warning("still loading the version another worker serves after %.1fs", timeout)
        except Exception as exc:  # noqa: BLE001 - logged; the current version keeps serving
            log.warning(
                "catching up with version %s failed: %s: %s", self.fence, type(exc).__name__, exc
            )
            self.fence = None

    async def _swap_to(self, version: str, reason: str) -> bool:
        for announce in self.before_load:
            try:
                await announce(self.current, version)
            except Exception:
                log.exception("before-load hook failed")
        try:
            model = await asyncio.to_thread(self.source.load, version)
        except Exception as exc:
            metrics.MODEL_RELOADS.labels("error").inc()
            self.load_error = f"version {version}: {type(exc).__name__}: {exc}"[:500]
            raise
        old = self.current
        for hook in self.before_swap:
            await _run_hook(hook, old, model, "before-swap")
        if self.replica_fence is not None:
            # Siblings fence before we answer; a first load too: a worker that starts while the
            # alias moves can read the new version before a running sibling has heard of it.
            self.replica_fence.publish(model.version)
        self.current = model
        self.fence = None
        self.load_error = None
        metrics.MODEL_RELOADS.labels("ok").inc()
        self._report(old, model)
        self.loaded.set()
        log.info(
            "serving model %s version %s as %s (was %s; %s)",
            model.name,
            model.version,
            self.arm,
            old.version if old else "none",
            reason,
        )
        for hook in self.after_swap:
            await _run_hook(hook, old, model, "after-swap")
        return True

    def _report(self, old: LoadedModel | None, model: LoadedModel) -> None:
        """``memoserve_arm_info`` for every arm; ``memoserve_model_info`` stays the champion's,
        as it was before arms (a canary on the champion's old version must not zero it)."""
        gauges = [metrics.ARM_INFO.labels(self.arm, model.name, model.version)]
        old_gauges = (
            [] if old is None else [metrics.ARM_INFO.labels(self.arm, old.name, old.version)]
        )
        if self.arm == "champion":
            gauges.append(metrics.MODEL_INFO.labels(model.name, model.version))
            if old is not None:
                old_gauges.append(metrics.MODEL_INFO.labels(old.name, old.version))
        for gauge in old_gauges:
            gauge.set(0)
        for gauge in gauges:
            gauge.set(1)

    async def _run(self) -> None:
        delay = 0.5
        while self.current is None:
            try:
                await self.refresh("start-up")
            except Exception as exc:  # noqa: BLE001 - any load failure means retry, stay unready
                log.error(
                    "model %s could not be loaded (%s: %s); retrying in %.1fs, not ready",
                    self.source.name,
                    type(exc).__name__,
                    exc,
                    delay,
                )
                await asyncio.sleep(delay * (0.8 + 0.4 * random.random()))
                delay = min(delay * 2, self.retry_max_seconds)
        while self.poll_seconds > 0:
            await asyncio.sleep(self.poll_seconds * (0.9 + 0.2 * random.random()))
            try:
                await self.refresh("poll")
            except Exception as exc:  # noqa: BLE001 - the poll must survive registry outages
                metrics.MODEL_POLLS.labels("error").inc()
                log.warning("model poll failed: %s: %s", type(exc).__name__, exc)
            else:
                metrics.MODEL_POLLS.labels("ok").inc()


async def _run_hook(hook: SwapHook, old: LoadedModel | None, new: LoadedModel, when: str) -> None:
    try:
        await hook(old, new)
    except Exception:
        log.exception("%s hook %s failed", when, getattr(hook, "__qualname__", hook))
