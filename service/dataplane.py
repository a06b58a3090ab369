"""The request path of one replica, as the design's diagram draws it: canonicalize, look up the
tiered cache, compute the misses once (coalesced, micro-batched), answer, store."""

from __future__ import annotations

import time
from dataclasses import dataclass

from service.batching import MicroBatcher
from service.cache.control import NO_DIRECTIVES, CacheControl
from service.cache.hot import HotInputs
from service.cache.keys import KeySpace
from service.cache.outcome import CacheOutcome
from service.cache.tiered import Lookup, TieredCache
from service.coalesce import Coalescer
from service.errors import InvalidInput, ModelNotFound, NotReady, PayloadTooLarge
from service.models.arms import Arm, ServingArms
from service.models.loaded import LoadedModel
from service.models.manager import ModelManager
from service.observability import metrics
from service.observability.spans import annotate_arm, annotate_lookup, child_span
from service.rows.canonical import CanonicalRows, RawRows, canonicalize
from service.shadow import ShadowCopies


@dataclass(frozen=True, slots=True)
class Prediction:
    """A ready response body, the cache outcome, the version and arm that answered; ``values``
    are the rows' encoded outputs the body joins (for protocols that answer in another shape)."""

    body: bytes
    outcome: CacheOutcome
    model: LoadedModel
    values: list[bytes]
    arm: Arm = Arm.CHAMPION


@dataclass(frozen=True, slots=True)
class Readiness:
    """``ready``, ``loading`` (no model yet) or ``stalled`` (a model call is stuck)."""

    status: str
    model: LoadedModel | None

    @property
    def ok(self) -> bool:
        """Whether the worker should get traffic."""
        return self.status == "ready"


class DataPlane:
    """Cache, model and metrics logic; the HTTP layer only parses and answers."""

    def __init__(
        self,
        arms: ServingArms,
        cache: TieredCache,
        coalescer: Coalescer,
        batcher: MicroBatcher,
        keys: KeySpace,
        *,
        hot: HotInputs | None = None,
        shadow: ShadowCopies | None = None,
        default_output: str = "predict",
        max_rows: int = 1000,
        max_body_bytes: int = 1_048_576,
    ) -> None:
        self.arms = arms
        self.manager: ModelManager = arms.champion
        self.shadow = shadow
        self.cache = cache
        self.coalescer = coalescer
        self.batcher = batcher
        self.keys = keys
        self.hot = hot
        self.default_output = default_output
        self.max_rows = max_rows
        self.max_body_bytes = max_body_bytes

    @property
    def name(self) -> str:
        """The served model's name."""
        return self.manager.name

    def ready(self) -> Readiness:
        """Ready once a model is loaded and no model call is stuck past its deadline. Redis is
        deliberately not a condition: the cache fails open."""
        model = self.manager.current
        if model is None:
            return Readiness("loading", None)
        if self.batcher.stalled:
            return Readiness("stalled", model)
        return Readiness("ready", model)

    def model_for(self, name: str | None, version: str | None = None) -> LoadedModel:
        """The champion's version of ``name`` (any name when None), or the version an arm
        serves when ``version`` is given; 503 before the first load, 404 for another name or
        a version no arm serves."""
        model = self.manager.current
        if model is None:
            raise NotReady(f"model {self.manager.name!r} is not loaded yet")
        if name is not None and name != model.name:
            raise ModelNotFound(f"no model named {name!r}", {"available": [model.name]})
        if version is not None:
            pinned = self.arms.current(self.arms.pinned(version))
            if pinned is not None:
                return pinned
        return model

    async def predict(
        self,
        raw: RawRows,
        *,
        model_name: str | None = None,
        version: str | None = None,
        output: str | None = None,
        cache_control: CacheControl = NO_DIRECTIVES,
        route_key: bytes | None = None,
    ) -> Prediction:
        """Predictions for ``raw`` from the arm its routing key (or ``version``) picks, from
        cache where possible. The version is read once here and used for every key, the
        model call and the write: a swap meanwhile never files one version's answer under
        another's key."""
        started = time.perf_counter()
        self.model_for(model_name, version)
        arm = self._arm(raw, version, route_key)
        model = await self.arms.serving(arm)  # a worker fenced by a sibling catches up first
        if version is not None and model.version != version:  # swapped while catching up
            arm = self.arms.pinned(version)
            model = await self.arms.serving(arm)
        annotate_arm(arm.value, model)
        output = self._output(model, output, len(raw.data))
        rows = canonicalize(raw, model.schema)
        keys = self.keys.rows(
            self.keys.row_prefix(model.name, model.version, output), rows.row_bytes
        )
        if self.hot is not None and not cache_control.no_store:  # no-store: keep no trace
            self.hot.maybe_record(self.keys.hot(model.name, model.version, output), rows)
        if cache_control.no_cache:
            lookup = self.cache.skip(len(keys))
        else:
            with child_span("cache.lookup") as span:
                lookup = await self.cache.lookup(keys)
                if span.is_recording():
                    annotate_lookup(span, model, lookup, arm.value)
        values = lookup.values
        if lookup.hits < len(keys):
            await self._fill(lookup, model, output, rows, keys, cache_control)
        body = b'{"predictions":[' + b",".join(values) + b"]}"  # type: ignore[arg-type]
        _count(arm, model, lookup, time.perf_counter() - started)
        return Prediction(body, lookup.outcome, model, values, arm)  # type: ignore[arg-type]

    def _arm(self, raw: RawRows, version: str | None, route_key: bytes | None) -> Arm:
        """The pinned version's arm, else the arm the routing key falls in: the caller's
        ``X-Memoserve-Route-Key``, else the first row's canonical bytes (as the champion's
        signature reads them), so one input always gets one arm."""
        if version is not None:
            return self.arms.pinned(version)

        def first_row() -> bytes:
            champion = self.manager.current
            if champion is None or not raw.data:
                return b""
            return canonicalize(RawRows(raw.data[:1], raw.columns), champion.schema).row_bytes[0]

        return self.arms.route(lambda: route_key if route_key is not None else first_row())

    def _output(self, model: LoadedModel, output: str | None, rows: int) -> str:
        output = output or self.default_output
        if output not in model.outputs:
            raise InvalidInput(
                f"output {output!r} is not offered by this model", {"outputs": list(model.outputs)}
            )
        if rows > self.max_rows:
            raise PayloadTooLarge(
                f"{rows} rows; at most {self.max_rows} per request", {"max_rows": self.max_rows}
            )
        return output

    async def _fill(
        self,
        lookup: Lookup,
        model: LoadedModel,
        output: str,
        rows: CanonicalRows,
        keys: list[str],
        cache_control: CacheControl,
    ) -> None:
        """Compute the rows no layer had into ``lookup.values``, then store them."""
        missing = lookup.missing
        miss_keys = [keys[i] for i in missing]
        miss_rows = rows.take(missing)

        async def compute(positions: list[int]) -> list[bytes]:
            try:
                return await self.batcher.submit(model, output, miss_rows.take(positions))
            except (ValueError, TypeError) as exc:
                # The rows passed the schema but the model refused them: the input's fault.
                raise InvalidInput(f"the model rejected the input: {exc}") from exc

        computed = await self.coalescer.run(miss_keys, compute)
        for i, value in zip(missing, computed, strict=True):
            lookup.values[i] = value
        twin = self.arms.current(Arm.SHADOW)
        if self.shadow is not None and twin is not None and twin.version != model.version:
            self.shadow.offer(model, twin, output, miss_rows, computed)
        if cache_control.no_store:
            self.coalescer.abandon(miss_keys)
        else:
            items = list(zip(miss_keys, computed, strict=True))
            await self.cache.store(items, after=self.coalescer.release)


def _count(arm: Arm, model: LoadedModel, lookup: Lookup, seconds: float) -> None:
    """The per-arm request, row and latency metrics of one prediction."""
    a, v = arm.value, model.version
    metrics.ARM_REQUESTS.labels(a, v, lookup.outcome.value).inc()
    n, hits = len(lookup.values), lookup.hits
    if hits:
        metrics.ARM_ROWS.labels(a, v, "hit").inc(hits)
    if hits < n:
        metrics.ARM_ROWS.labels(a, v, "bypass" if lookup.bypass else "miss").inc(n - hits)
    metrics.ARM_DURATION.labels(a, v).observe(seconds)
