"""In-process single-flight: callers asking for a key being computed await that computation."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from service.coalesce.base import Coalescer, Compute
from service.observability import metrics
from service.observability.spans import child_span


class SingleFlight(Coalescer):
    """Callers of one process asking for a key being computed await that computation."""

    def __init__(self, inner: Coalescer) -> None:
        self.inner = inner
        self._inflight: dict[str, asyncio.Future[bytes]] = {}
        self._waits = metrics.COALESCED_WAITS.labels("local")

    async def run(self, keys: list[str], compute: Compute) -> list[bytes]:
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[bytes]] = []
        own: list[int] = []
        for i, key in enumerate(keys):
            future = self._inflight.get(key)
            if future is None:
                future = self._inflight[key] = loop.create_future()
                own.append(i)
            else:
                self._waits.inc()
            futures.append(future)
        if own:
            await self._compute_own([keys[i] for i in own], own, compute)
        if len(own) == len(keys):
            return [f.result() for f in futures]
        with child_span("coalesce.wait") as span:
            if span.is_recording():
                span.set_attribute("coalesce.scope", "local")
                span.set_attribute("coalesce.keys", len(keys) - len(own))
            # Shielded: a waiter that is cancelled (its client left) must not cancel the
            # computation the other callers share.
            return list(await asyncio.gather(*(asyncio.shield(f) for f in futures)))

    async def _compute_own(self, keys: list[str], own: list[int], compute: Compute) -> None:
        results: list[bytes] | None = None
        error: BaseException | None = None
        try:
            results = await self.inner.run(keys, lambda sub: compute([own[j] for j in sub]))
        except BaseException as exc:
            error = exc
            raise
        finally:
            for n, key in enumerate(keys):
                future = self._inflight.pop(key)
                if future.done():
                    continue
                if results is not None:
                    future.set_result(results[n])
                elif isinstance(error, Exception):
                    future.set_exception(error)
                    future.exception()  # retrieved: waiters see it, nobody else warns
                else:  # cancelled
                    future.cancel()

    async def release(self, keys: Sequence[str]) -> None:
        await self.inner.release(keys)

    def abandon(self, keys: Sequence[str]) -> None:
        self.inner.abandon(keys)
