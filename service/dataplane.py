"""The request path of one replica, as the design's diagram draws it: canonicalize, look up the
tiered cache, compute the misses once (coalesced, micro-batched), answer, store."""

from __future__ import annotations

from dataclasses import dataclass

from service.batching import MicroBatcher
from service.cache.control import NO_DIRECTIVES, CacheControl
from service.cache.hot import HotInputs
from service.cache.keys import KeySpace
from service.cache.outcome import CacheOutcome
from service.cache.tiered import Lookup, TieredCache
from service.coalesce import Coalescer
from service.errors import InvalidInput, ModelNotFound, NotReady, PayloadTooLarge
from service.models.loaded import LoadedModel
from service.models.manager import ModelManager
from service.observability.spans import annotate_lookup, child_span
from service.rows.canonical import CanonicalRows, RawRows, canonicalize


@dataclass(frozen=True, slots=True)
class Prediction:
    """A ready response body, the cache outcome and the version that answered; ``values`` are
    the rows' encoded outputs the body joins (for protocols that answer in another shape)."""

    body: bytes
    outcome: CacheOutcome
    model: LoadedModel
    values: list[bytes]


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
        manager: ModelManager,
        cache: TieredCache,
        coalescer: Coalescer,
        batcher: MicroBatcher,
        keys: KeySpace,
        *,
        hot: HotInputs | None = None,
        default_output: str = "predict",
        max_rows: int = 1000,
        max_body_bytes: int = 1_048_576,
    ) -> None:
        self.manager = manager
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
        """The serving version of ``name`` (any name when None), which must be ``version`` when
        given; 503 before the first load."""
        model = self.manager.current
        if model is None:
            raise NotReady(f"model {self.manager.name!r} is not loaded yet")
        if name is not None and name != model.name:
            raise ModelNotFound(f"no model named {name!r}", {"available": [model.name]})
        if version is not None and version != model.version:
            raise ModelNotFound(
                f"model {model.name!r} has no version {version!r} served here; "
                f"version {model.version!r} is",
                {"serving": model.version},
            )
        return model

    async def predict(
        self,
        raw: RawRows,
        *,
        model_name: str | None = None,
        version: str | None = None,
        output: str | None = None,
        cache_control: CacheControl = NO_DIRECTIVES,
    ) -> Prediction:
        """Predictions for ``raw`` with the serving version (which must be ``version`` when
        given), from cache where possible."""
        self.model_for(model_name, version)
        await self.manager.serving()  # a worker fenced by a sibling's newer version catches up
        model = self.model_for(model_name, version)
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
                    annotate_lookup(span, model, lookup)
        values = lookup.values
        if lookup.hits < len(keys):
            await self._fill(lookup, model, output, rows, keys, cache_control)
        body = b'{"predictions":[' + b",".join(values) + b"]}"  # type: ignore[arg-type]
        return Prediction(body, lookup.outcome, model, values)  # type: ignore[arg-type]

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
        if cache_control.no_store:
            self.coalescer.abandon(miss_keys)
        else:
            items = list(zip(miss_keys, computed, strict=True))
            await self.cache.store(items, after=self.coalescer.release)
