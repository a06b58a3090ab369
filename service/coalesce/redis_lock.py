"""Cross-replica coalescing: a ``SET NX PX`` lock per key in Redis."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from service.background import BackgroundTasks
from service.cache.keys import KeySpace
from service.cache.redis import Client, RedisCache
from service.coalesce.base import Coalescer, Compute
from service.errors import CacheUnavailable
from service.observability import metrics
from service.observability.spans import child_span


class RedisLockCoalescer(Coalescer):
    """Takes a ``SET NX PX`` lock per key; waits, bounded, for keys another replica holds,
    then computes whatever did not arrive. Redis unavailable: computes everything itself."""

    def __init__(
        self,
        redis: RedisCache,
        keys: KeySpace,
        background: BackgroundTasks,
        *,
        lock_ms: int,
        wait_ms: int,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.lock_ms = lock_ms
        self.wait_seconds = wait_ms / 1000
        self._background = background
        self._waits = metrics.COALESCED_WAITS.labels("distributed")

    async def run(self, keys: list[str], compute: Compute) -> list[bytes]:
        every = list(range(len(keys)))
        try:
            acquired = await self.redis.run(self._lock(keys))
        except CacheUnavailable:
            return await compute(every)
        theirs = [i for i, ok in enumerate(acquired) if not ok]
        mine = [i for i, ok in enumerate(acquired) if ok]
        if not theirs:
            try:
                return await compute(every)
            except BaseException:
                self.abandon(keys)
                raise
        self._waits.inc(len(theirs))
        results: list[bytes | None] = [None] * len(keys)
        mine_task = asyncio.ensure_future(compute(mine)) if mine else None
        try:
            with child_span("coalesce.wait") as span:
                waited = await self._wait_for([keys[i] for i in theirs])
                if span.is_recording():
                    span.set_attribute("coalesce.scope", "distributed")
                    span.set_attribute("coalesce.keys", len(theirs))
                    span.set_attribute("coalesce.timeouts", waited.count(None))
            for i, value in zip(theirs, waited, strict=True):
                results[i] = value
            late = [i for i in theirs if results[i] is None]
            if late:  # the other replica was too slow or died: compute ourselves
                for i, value in zip(late, await compute(late), strict=True):
                    results[i] = value
            if mine_task is not None:
                for i, value in zip(mine, await mine_task, strict=True):
                    results[i] = value
        except BaseException:
            # No value will be written for our locks: free them, or the other replicas would
            # wait out the lock for nothing.
            if mine_task is not None:
                mine_task.cancel()
            self.abandon([keys[i] for i in mine])
            raise
        return [r for r in results if r is not None]

    async def release(self, keys: Sequence[str]) -> None:
        if not keys:
            return
        locks = [self.keys.lock(k) for k in keys]
        try:
            await self.redis.run(lambda r: r.unlink(*locks))
        except CacheUnavailable:
            pass  # the locks expire by themselves

    def abandon(self, keys: Sequence[str]) -> None:
        if keys:
            self._background.spawn(self.release(keys))

    def _lock(self, keys: list[str]) -> Callable[[Client], Awaitable[list[bool | None]]]:
        locks = [self.keys.lock(k) for k in keys]

        async def lock(r: Client) -> list[bool | None]:
            async with r.pipeline(transaction=False) as pipe:
                for key in locks:
                    pipe.set(key, b"1", nx=True, px=self.lock_ms)
                result: list[bool | None] = await pipe.execute()
                return result

        return lock

    async def _wait_for(self, keys: Sequence[str]) -> list[bytes | None]:
        """Poll for values another replica is computing, backing off, for the wait bound."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait_seconds
        delay = 0.002
        values: list[bytes | None] = [None] * len(keys)
        while True:
            pending = [i for i, v in enumerate(values) if v is None]
            if not pending:
                return values
            remaining = deadline - loop.time()
            if remaining <= 0:
                return values
            await asyncio.sleep(min(delay, remaining))
            delay = min(delay * 2, 0.05)
            try:
                found = await self.redis.get_many([keys[i] for i in pending])
            except CacheUnavailable:
                return values
            for i, value in zip(pending, found, strict=True):
                values[i] = value
