"""The L1 near-cache in front of the shared cache: one lookup, one store, their metrics."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from opentelemetry.trace import Span, StatusCode

from service.background import BackgroundTasks
from service.cache.base import PredictionCache
from service.cache.memory import MemoryCache
from service.cache.outcome import CacheOutcome
from service.errors import CacheUnavailable
from service.observability import metrics
from service.observability.spans import background_span, child_span

AfterStore = Callable[[list[str]], Awaitable[None]]


@dataclass(slots=True)
class Lookup:
    """Values found (None where missing), how many, the deepest layer asked, and whether the
    shared cache failed."""

    values: list[bytes | None]
    hits: int
    layer: str
    bypass: bool = False

    @property
    def missing(self) -> list[int]:
        """Positions of the rows no layer had."""
        return [i for i, v in enumerate(self.values) if v is None]

    @property
    def outcome(self) -> CacheOutcome:
        """The request's outcome as ``X-Cache`` states it."""
        return CacheOutcome.of_request(len(self.values), self.hits, bypass=self.bypass)


class TieredCache:
    """L1 (in-process, short TTL) then the shared cache (one ``get_many`` for the rest).

    The shared layer fails open: ``CacheUnavailable`` makes its rows misses and the lookup a
    BYPASS. Writes go to L1 at once and to a write-behind shared layer in the background, so an
    answer never waits on Redis."""

    def __init__(
        self,
        shared: PredictionCache,
        l1: MemoryCache | None,
        background: BackgroundTasks,
        *,
        ttl_seconds: int,
    ) -> None:
        self.shared = shared
        self.l1 = l1
        self.ttl_seconds = ttl_seconds
        self._background = background
        self._rows = {
            (outcome, layer): metrics.CACHE_RESULTS.labels(outcome.value, layer)
            for outcome in (CacheOutcome.HIT, CacheOutcome.MISS, CacheOutcome.BYPASS)
            for layer in ("l1", shared.layer)
        }
        self._skipped = metrics.CACHE_RESULTS.labels(CacheOutcome.SKIPPED.value, shared.layer)

    def skip(self, n: int) -> Lookup:
        """No lookup (``Cache-Control: no-cache``): every row is a miss, counted as skipped."""
        self._skipped.inc(n)
        return Lookup([None] * n, 0, self.shared.layer)

    async def lookup(self, keys: Sequence[str]) -> Lookup:
        """Values from L1, then the shared cache for the rest."""
        n = len(keys)
        if self.l1 is not None:
            values = self.l1.get_many_now(keys)
            hits = n - values.count(None)
            if hits:
                self._rows[CacheOutcome.HIT, "l1"].inc(hits)
            if hits == n:
                return Lookup(values, n, "l1")
            missing = [i for i, v in enumerate(values) if v is None]
        else:
            values, hits, missing = [None] * n, 0, list(range(n))
        layer = self.shared.layer
        try:
            found = await self.shared.get_many([keys[i] for i in missing])
        except CacheUnavailable:
            self._rows[CacheOutcome.BYPASS, layer].inc(len(missing))
            return Lookup(values, hits, layer, bypass=True)
        fresh: list[tuple[str, bytes]] = []
        for i, value in zip(missing, found, strict=True):
            if value is not None:
                values[i] = value
                fresh.append((keys[i], value))
        if fresh:
            self._rows[CacheOutcome.HIT, layer].inc(len(fresh))
            if self.l1 is not None:
                self.l1.set_many_now(fresh, self.ttl_seconds)
        if len(fresh) < len(missing):
            self._rows[CacheOutcome.MISS, layer].inc(len(missing) - len(fresh))
        return Lookup(values, hits + len(fresh), layer)

    async def store(self, items: list[tuple[str, bytes]], after: AfterStore | None = None) -> None:
        """L1 now; the shared layer now if it is in-process (the next request, whichever it is,
        must find it), else in the background, then ``after(keys)`` once it is written."""
        if self.l1 is not None:
            self.l1.set_many_now(items, self.ttl_seconds)
        if self.shared.write_behind:
            self._background.spawn(self._write_behind(items, after))
            return
        with child_span("cache.store") as span:
            self._annotate(span, len(items))
            await self.shared.set_many(items, self.ttl_seconds)
        if after is not None:
            await after([k for k, _ in items])

    async def drain(self) -> None:
        """Wait for the background writes running now."""
        await self._background.drain()

    def forget(self, prefix: str) -> int:
        """Drop this worker's L1 entries under ``prefix`` (a version that no longer serves)."""
        return self.l1.delete_prefix(prefix) if self.l1 is not None else 0

    async def _write_behind(self, items: list[tuple[str, bytes]], after: AfterStore | None) -> None:
        with background_span("cache.store") as span:
            self._annotate(span, len(items))
            try:
                await self.shared.set_many(items, self.ttl_seconds)
                if after is not None:
                    await after([k for k, _ in items])
            except CacheUnavailable as exc:
                metrics.CACHE_WRITE_ERRORS.inc()
                span.set_status(StatusCode.ERROR, str(exc))

    def _annotate(self, span: Span, keys: int) -> None:
        if span.is_recording():
            span.set_attribute("cache.layer", self.shared.layer)
            span.set_attribute("cache.keys", keys)
