"""The request path of one replica: canonicalize, look up L1 then the shared cache, compute
the misses once (single-flight, micro-batched), answer, and store in the background."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from opentelemetry.trace import Span, StatusCode
from redis.asyncio import Redis

from service import metrics
from service.batching import MicroBatcher
from service.cache.base import PredictionCache
from service.cache.keys import key_prefix, row_keys
from service.cache.memory import MemoryCache
from service.cache.redis import RedisCache
from service.canonical import CanonicalRows, RawRows, canonicalize
from service.errors import (
    CacheUnavailable,
    InvalidInput,
    ModelNotFound,
    NotReady,
    PayloadTooLarge,
)
from service.models.loaded import LoadedModel
from service.models.manager import ModelManager
from service.observability.spans import annotate_lookup, background_span, child_span
from service.settings import CoalesceMode, Settings

if TYPE_CHECKING:
    from service.promotion.warmup import HotInputs

log = logging.getLogger(__name__)

HIT, MISS, PARTIAL, BYPASS = "HIT", "MISS", "PARTIAL", "BYPASS"


@dataclass(frozen=True, slots=True)
class Prediction:
    """A ready response body, the cache outcome and the version that answered."""

    body: bytes
    cache: str
    model: LoadedModel


@dataclass(frozen=True, slots=True)
class CacheControl:
    """The request's ``Cache-Control`` directives that matter here."""

    no_cache: bool = False
    no_store: bool = False

    @classmethod
    def parse(cls, header: str | None) -> CacheControl:
        """Directives from a header value (case-insensitive, comma-separated)."""
        if not header:
            return _DEFAULT_CC
        tokens = {t.strip().lower() for t in header.split(",")}
        return cls("no-cache" in tokens, "no-store" in tokens)


_DEFAULT_CC = CacheControl()


class DataPlane:
    """Cache, model and metrics logic; the HTTP layer only parses and answers."""

    def __init__(
        self,
        settings: Settings,
        manager: ModelManager,
        shared: PredictionCache,
        batcher: MicroBatcher,
        l1: MemoryCache | None = None,
    ) -> None:
        self.settings = settings
        self.manager = manager
        self.shared = shared
        self.l1 = l1
        self.batcher = batcher
        self.hot: HotInputs | None = None  # set when warm-up is on; samples hot rows
        self._ttl = settings.cache_ttl_seconds
        self._inflight: dict[str, asyncio.Future[bytes]] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._results = {
            (r, layer): metrics.CACHE_RESULTS.labels(r, layer)
            for r in ("hit", "miss", "bypass", "error")
            for layer in ("l1", shared.layer)
        }
        self._local_waits = metrics.COALESCED_WAITS.labels("local")
        self._distributed_waits = metrics.COALESCED_WAITS.labels("distributed")

    @property
    def redis(self) -> RedisCache | None:
        """The shared cache when it is Redis (locks, pub/sub and purges need it)."""
        return self.shared if isinstance(self.shared, RedisCache) else None

    def model_for(self, name: str | None) -> LoadedModel:
        """The serving version of ``name`` (any name when None); 503 before the first load."""
        model = self.manager.current
        if model is None:
            raise NotReady(f"model {self.manager.name!r} is not loaded yet")
        if name is not None and name != model.name:
            raise ModelNotFound(f"no model named {name!r}", {"available": [model.name]})
        return model

    async def predict(
        self,
        raw: RawRows,
        *,
        model_name: str | None = None,
        output: str | None = None,
        cache_control: CacheControl = _DEFAULT_CC,
    ) -> Prediction:
        """Predictions for ``raw`` with the serving version, from cache where possible."""
        model = self.model_for(model_name)
        if self.manager.fence is not None:
            # Another worker already answers with a newer version: do not answer with this one.
            await self.manager.catch_up(self.settings.model_load_wait_seconds)
            model = self.model_for(model_name)
        output = output or self.settings.model_output
        if output not in model.outputs:
            raise InvalidInput(
                f"output {output!r} is not offered by this model", {"outputs": list(model.outputs)}
            )
        if len(raw.data) > self.settings.max_rows:
            raise PayloadTooLarge(
                f"{len(raw.data)} rows; at most {self.settings.max_rows} per request",
                {"max_rows": self.settings.max_rows},
            )
        rows = canonicalize(raw, model.schema)
        prefix = key_prefix(self.settings.namespace, model.name, model.version, output)
        keys = row_keys(prefix, rows.row_bytes)
        if self.hot is not None:
            self.hot.maybe_record(model, output, rows)
        n = len(keys)

        bypass = False
        if cache_control.no_cache:
            values: list[bytes | None] = [None] * n
            hits = 0
            self._results["bypass", self.shared.layer].inc(n)
        else:
            values, bypass = await self._lookup(model, keys)
            hits = n - values.count(None)

        if hits < n:
            missing = [i for i, v in enumerate(values) if v is None]
            miss_keys = [keys[i] for i in missing]
            computed = await self._compute(model, output, rows.take(missing), miss_keys)
            for i, value in zip(missing, computed, strict=True):
                values[i] = value
            if not cache_control.no_store:
                self._store(list(zip(miss_keys, computed, strict=True)))
            elif self._distributed:
                self._background_task(self._release_locks(miss_keys))  # nothing will be written

        body = b'{"predictions":[' + b",".join(values) + b"]}"  # type: ignore[arg-type]
        if bypass:
            status = BYPASS
        else:
            status = HIT if hits == n else MISS if hits == 0 else PARTIAL
        return Prediction(body, status, model)

    async def _lookup(self, model: LoadedModel, keys: list[str]) -> tuple[list[bytes | None], bool]:
        """Values from the cache layers, traced as one ``cache.lookup`` span."""
        with child_span("cache.lookup") as span:
            values, bypass, layer = await self._lookup_layers(keys)
            if span.is_recording():
                annotate_lookup(span, model, values, layer, bypass)
            return values, bypass

    async def _lookup_layers(self, keys: list[str]) -> tuple[list[bytes | None], bool, str]:
        """Values from L1, then one MGET for the rest; bypass=True when the shared cache failed.
        The layer returned is the deepest one asked."""
        n = len(keys)
        if self.l1 is not None:
            values = self.l1.get_many_now(keys)
            l1_hits = n - values.count(None)
            if l1_hits:
                self._results["hit", "l1"].inc(l1_hits)
            if l1_hits == n:
                return values, False, "l1"
            missing = [i for i, v in enumerate(values) if v is None]
        else:
            values = [None] * n
            missing = list(range(n))
        layer = self.shared.layer
        try:
            found = await self.shared.get_many([keys[i] for i in missing])
        except CacheUnavailable:
            self._results["error", layer].inc(len(missing))
            return values, True, layer
        fresh: list[tuple[str, bytes]] = []
        for i, value in zip(missing, found, strict=True):
            if value is not None:
                values[i] = value
                fresh.append((keys[i], value))
        if fresh:
            self._results["hit", layer].inc(len(fresh))
            if self.l1 is not None:
                self.l1.set_many_now(fresh, self._ttl)
        if len(fresh) < len(missing):
            self._results["miss", layer].inc(len(missing) - len(fresh))
        return values, False, layer

    async def _compute(
        self, model: LoadedModel, output: str, rows: CanonicalRows, keys: list[str]
    ) -> list[bytes]:
        """Outputs for missing rows; concurrent requests for one key share one computation."""
        if self.settings.coalesce is CoalesceMode.OFF:
            return await self._compute_owned(model, output, rows, keys)
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[bytes]] = []
        own: list[int] = []
        for i, key in enumerate(keys):
            future = self._inflight.get(key)
            if future is None:
                future = loop.create_future()
                self._inflight[key] = future
                own.append(i)
            else:
                self._local_waits.inc()
            futures.append(future)
        if own:
            own_keys = [keys[i] for i in own]
            try:
                results = await self._compute_owned(model, output, rows.take(own), own_keys)
            except BaseException as exc:
                for key in own_keys:
                    fut = self._inflight.pop(key)
                    if fut.done():
                        continue
                    if isinstance(exc, asyncio.CancelledError):
                        fut.cancel()
                    else:
                        fut.set_exception(exc)
                        fut.exception()  # retrieved: waiters see it, nobody else warns
                raise
            for key, value in zip(own_keys, results, strict=True):
                self._inflight.pop(key).set_result(value)
        if len(own) == len(keys):
            return list(await asyncio.gather(*futures))
        with child_span("coalesce.wait") as span:
            if span.is_recording():
                span.set_attribute("coalesce.scope", "local")
                span.set_attribute("coalesce.keys", len(keys) - len(own))
            return list(await asyncio.gather(*futures))

    async def _compute_owned(
        self, model: LoadedModel, output: str, rows: CanonicalRows, keys: list[str]
    ) -> list[bytes]:
        redis = self.redis
        if self.settings.coalesce is CoalesceMode.DISTRIBUTED and redis is not None:
            return await self._compute_distributed(redis, model, output, rows, keys)
        return await self._predict(model, output, rows)

    async def _predict(self, model: LoadedModel, output: str, rows: CanonicalRows) -> list[bytes]:
        try:
            return await self.batcher.submit(model, output, rows)
        except (ValueError, TypeError) as exc:
            # The rows passed the schema but the model refused them: the input's fault.
            raise InvalidInput(f"the model rejected the input: {exc}") from exc

    async def _compute_distributed(
        self,
        redis: RedisCache,
        model: LoadedModel,
        output: str,
        rows: CanonicalRows,
        keys: list[str],
    ) -> list[bytes]:
        """Take a ``SET NX PX`` lock per key; wait a bounded time on keys another replica holds."""
        lock_ms = self.settings.coalesce_lock_ms

        async def lock(r: Redis) -> list[bool | None]:
            async with r.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.set(key + ":lock", b"1", nx=True, px=lock_ms)
                result: list[bool | None] = await pipe.execute()
                return result

        try:
            acquired = await redis.run(lock)
        except CacheUnavailable:
            return await self._predict(model, output, rows)
        theirs = [i for i, ok in enumerate(acquired) if not ok]
        if not theirs:
            try:
                return await self._predict(model, output, rows)
            except BaseException:
                self._background_task(self._release_locks(keys))
                raise
        self._distributed_waits.inc(len(theirs))
        results: list[bytes | None] = [None] * len(keys)
        mine = [i for i, ok in enumerate(acquired) if ok]
        mine_task = (
            asyncio.ensure_future(self._predict(model, output, rows.take(mine))) if mine else None
        )
        try:
            with child_span("coalesce.wait") as span:
                waited = await self._wait_for(redis, [keys[i] for i in theirs])
                if span.is_recording():
                    span.set_attribute("coalesce.scope", "distributed")
                    span.set_attribute("coalesce.keys", len(theirs))
                    span.set_attribute("coalesce.timeouts", waited.count(None))
            for i, value in zip(theirs, waited, strict=True):
                results[i] = value
            late = [i for i in theirs if results[i] is None]
            if late:  # the other replica was too slow or died: compute ourselves
                for i, value in zip(
                    late, await self._predict(model, output, rows.take(late)), strict=True
                ):
                    results[i] = value
            if mine_task is not None:
                for i, value in zip(mine, await mine_task, strict=True):
                    results[i] = value
        except BaseException:
            # No value will be written for our locks: free them, or the other replicas would
            # wait out coalesce_wait_ms for nothing.
            if mine_task is not None:
                mine_task.cancel()
            self._background_task(self._release_locks([keys[i] for i in mine]))
            raise
        return [r for r in results if r is not None]

    async def _wait_for(self, redis: RedisCache, keys: Sequence[str]) -> list[bytes | None]:
        """Poll for values another replica is computing, backing off, for coalesce_wait_ms."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.coalesce_wait_ms / 1000
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
                found = await redis.get_many([keys[i] for i in pending])
            except CacheUnavailable:
                return values
            for i, value in zip(pending, found, strict=True):
                values[i] = value

    @property
    def _distributed(self) -> bool:
        return self.settings.coalesce is CoalesceMode.DISTRIBUTED and self.redis is not None

    def _background_task(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _release_locks(self, keys: Sequence[str]) -> None:
        redis = self.redis
        if redis is None or not keys:
            return
        with contextlib.suppress(CacheUnavailable):
            await redis.run(lambda r: r.unlink(*(k + ":lock" for k in keys)))

    def _store(self, items: list[tuple[str, bytes]]) -> None:
        """L1 now; Redis in the background, so the answer never waits on it. An in-process
        shared cache is written now too: a dict write is cheaper than a task, and the next
        request, whichever it is, must find it."""
        if self.l1 is not None:
            self.l1.set_many_now(items, self._ttl)
        if isinstance(self.shared, MemoryCache):
            with child_span("cache.store") as span:
                self._annotate_store(span, len(items))
                self.shared.set_many_now(items, self._ttl)
            return
        self._background_task(self._write_shared(items))

    async def _write_shared(self, items: list[tuple[str, bytes]]) -> None:
        with background_span("cache.store") as span:
            self._annotate_store(span, len(items))
            try:
                await self.shared.set_many(items, self._ttl)
                if self._distributed:
                    await self._release_locks([k for k, _ in items])
            except CacheUnavailable as exc:
                metrics.CACHE_WRITE_ERRORS.inc()
                span.set_status(StatusCode.ERROR, str(exc))

    def _annotate_store(self, span: Span, keys: int) -> None:
        if span.is_recording():
            span.set_attribute("cache.layer", self.shared.layer)
            span.set_attribute("cache.keys", keys)

    async def drain(self) -> None:
        """Wait for background writes (shutdown)."""
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
