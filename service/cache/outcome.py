"""What the cache did: one name for the ``X-Cache`` header, the metric label and the span."""

from __future__ import annotations

from enum import StrEnum


class CacheOutcome(StrEnum):
    """A request's outcome (every row, or some) or one row's (``memoserve_cache_results``)."""

    HIT = "hit"
    """Answered from a cache layer."""

    MISS = "miss"
    """Not cached: computed by the model (and stored, unless ``no-store``)."""

    PARTIAL = "partial"
    """A request of several rows, some of them hits (requests only)."""

    BYPASS = "bypass"
    """The shared cache failed or its breaker is open: answered without it (fail open)."""

    SKIPPED = "skipped"
    """Not looked up: ``Cache-Control: no-cache`` (rows only; such a request is a MISS)."""

    @property
    def header(self) -> str:
        """The ``X-Cache`` header value (``HIT``, ``MISS``, ``PARTIAL``, ``BYPASS``)."""
        return self.value.upper()

    @classmethod
    def of_request(cls, rows: int, hits: int, *, bypass: bool) -> CacheOutcome:
        """The outcome of a request of ``rows`` rows, ``hits`` of them from a cache."""
        if bypass:
            return cls.BYPASS
        if hits == rows:
            return cls.HIT
        return cls.MISS if hits == 0 else cls.PARTIAL
