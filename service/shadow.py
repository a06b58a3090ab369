"""Shadow copies: the shadow version computes the rows the serving version just computed, off
the request path, and counts whether the two agree: the numbers to look at before promoting.

The copy is offered after the answer's values exist and never awaited by the request. At most
``max_pending`` rows wait for or sit in a shadow model call; past that a copy is dropped and
counted (``memoserve_shadow_dropped_rows_total``), so a loaded replica sheds shadow work first.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from service.background import BackgroundTasks
from service.errors import MemoserveError
from service.models.loaded import LoadedModel
from service.observability import metrics
from service.rows.canonical import CanonicalRows

log = logging.getLogger(__name__)

Compute = Callable[[LoadedModel, str, CanonicalRows], Awaitable[list[bytes]]]
"""Encoded outputs of a model for rows (the shadow's own micro-batcher, in the app)."""


class ShadowCopies:
    """A bounded queue of rows the shadow version computes again, and their agreement."""

    def __init__(self, compute: Compute, *, max_pending: int) -> None:
        self.compute = compute
        self.max_pending = max_pending
        self.pending = 0
        """Rows offered whose comparison has not finished."""
        self._tasks = BackgroundTasks("shadow copy")

    def offer(
        self,
        served: LoadedModel,
        shadow: LoadedModel,
        output: str,
        rows: CanonicalRows,
        values: list[bytes],
    ) -> bool:
        """Compare ``shadow`` on ``rows`` with the ``values`` ``served`` answered, later; False
        (and counted) when the queue is full. Never blocks."""
        n = len(rows)
        if self.pending + n > self.max_pending:
            metrics.SHADOW_DROPPED.inc(n)
            return False
        self.pending += n
        self._tasks.spawn(self._compare(served, shadow, output, rows, values))
        return True

    async def drain(self) -> None:
        """Wait for the comparisons running now (tests; shutdown cancels them instead)."""
        await self._tasks.drain()

    async def stop(self) -> None:
        """Cancel pending comparisons."""
        await self._tasks.cancel()

    async def _compare(
        self,
        served: LoadedModel,
        shadow: LoadedModel,
        output: str,
        rows: CanonicalRows,
        values: list[bytes],
    ) -> None:
        counter = metrics.SHADOW_ROWS
        labels = (served.version, shadow.version)
        try:
            if shadow.schema != served.schema or output not in shadow.outputs:
                # Rows canonicalized by one signature are not the other's input.
                counter.labels(*labels, "incompatible").inc(len(rows))
                return
            try:
                copies = await self.compute(shadow, output, rows)
            except (MemoserveError, ValueError, TypeError, RuntimeError) as exc:
                counter.labels(*labels, "error").inc(len(rows))
                log.info("shadow version %s failed on %d rows: %s", shadow.version, len(rows), exc)
                return
            agree = sum(a == b for a, b in zip(copies, values, strict=True))
            if agree:
                counter.labels(*labels, "agree").inc(agree)
            if agree < len(values):
                counter.labels(*labels, "disagree").inc(len(values) - agree)
        finally:
            self.pending -= len(rows)
