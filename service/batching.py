"""Micro-batching: misses of concurrent requests become one model call, run in a thread.

Rows queue up while the model is busy, so batches grow with load and an idle replica adds
no delay. ``max_wait`` holds a batch open a little longer for more rows, but only while the
last call merged several requests: under load, clients whose answers just came back are on their
way with their next rows (without the wait, 16 clients settle into two alternating batches of 8),
while a lone client never waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from opentelemetry import trace

from service.background import BackgroundTasks
from service.errors import ModelTimeout, Overloaded
from service.models.loaded import LoadedModel
from service.observability import metrics
from service.observability.spans import batch_span, model_attributes
from service.rows.canonical import CanonicalRows

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Job:
    model: LoadedModel
    output: str
    rows: CanonicalRows
    future: asyncio.Future[list[bytes]]
    span: trace.Span  # the waiting request's, to parent or link the model.predict span


class MicroBatcher:
    """Merges jobs of one model version and output up to ``max_rows`` rows per call."""

    def __init__(
        self,
        *,
        max_rows: int,
        max_wait_seconds: float,
        threads: int,
        timeout_seconds: float = 30.0,
        max_queued_rows: int = 4096,
    ) -> None:
        self.max_rows = max_rows
        self.max_wait = max_wait_seconds
        self.timeout = timeout_seconds
        self.max_queued_rows = max_queued_rows
        self.stalled = 0
        """Model calls past their deadline that have not returned yet (threads held)."""
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="predict")
        self._slots = asyncio.Semaphore(threads)
        self._pending: deque[_Job] = deque()
        self._queued = 0
        self._last_jobs = 1  # requests merged into the last call: the sign of concurrent load
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._running = BackgroundTasks("model call")

    def start(self) -> None:
        """Start the dispatcher on the running loop."""
        self._task = asyncio.create_task(self._dispatch(), name="micro-batcher")

    async def stop(self) -> None:
        """Stop dispatching; in-flight model calls finish."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._running.drain()
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def submit(self, model: LoadedModel, output: str, rows: CanonicalRows) -> list[bytes]:
        """Encoded outputs for ``rows``, computed in some batch; Overloaded at once when a
        model call is stuck or the queue is full, rather than waiting behind them."""
        if self.stalled:
            raise Overloaded(
                f"a model call has been running for more than {self.timeout:g}s",
                {"stalled_calls": self.stalled},
            )
        if self._queued + len(rows) > self.max_queued_rows:
            raise Overloaded(
                f"{self._queued} rows wait for the model already",
                {"max_queued_rows": self.max_queued_rows},
            )
        future: asyncio.Future[list[bytes]] = asyncio.get_running_loop().create_future()
        self._pending.append(_Job(model, output, rows, future, trace.get_current_span()))
        self._queued += len(rows)
        self._wake.set()
        return await future

    async def _dispatch(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                await self._slots.acquire()
                if self.max_wait > 0 and self._last_jobs > 1:
                    await self._fill()
                self._running.spawn(self._run(self._take_batch()))

    async def _fill(self) -> None:
        """Wait up to ``max_wait`` for the queue to hold a full batch."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait
        while self._queued < self.max_rows and (left := deadline - loop.time()) > 0:
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), left)

    def _take_batch(self) -> list[_Job]:
        """The first job plus queued jobs of the same model version and output, up to max_rows."""
        first = self._pending.popleft()
        batch, rows = [first], len(first.rows)
        kept: deque[_Job] = deque()
        while self._pending:
            job = self._pending.popleft()
            same = job.model is first.model and job.output == first.output
            if same and rows + len(job.rows) <= self.max_rows:
                batch.append(job)
                rows += len(job.rows)
            else:
                kept.append(job)
        self._pending.extendleft(reversed(kept))
        self._queued -= rows
        self._last_jobs = len(batch)
        return batch

    async def _run(self, batch: list[_Job]) -> None:
        stuck: list[asyncio.Future[list[bytes]]] = []
        try:
            try:
                results = await self._call(batch, on_stall=stuck.append)
            except Exception as exc:
                if len(batch) == 1 or isinstance(exc, ModelTimeout):
                    raise
                # One request's rows must not fail its neighbours: retry each on its own.
                for job in batch:
                    await self._run_one(job)
                return
            offset = 0
            for job in batch:
                n = len(job.rows)
                if not job.future.done():
                    job.future.set_result(results[offset : offset + n])
                offset += n
        except Exception as exc:  # noqa: BLE001 - handed to the waiting request
            for job in batch:
                if not job.future.done():
                    job.future.set_exception(exc)
        finally:
            if stuck:  # it keeps its thread: no batch may queue behind it until it returns
                stuck[0].add_done_callback(lambda _: self._slots.release())
            else:
                self._slots.release()

    async def _run_one(self, job: _Job) -> None:
        try:
            result = await self._call([job])
        except Exception as exc:  # noqa: BLE001 - handed to the waiting request
            if not job.future.done():
                job.future.set_exception(exc)
        else:
            if not job.future.done():
                job.future.set_result(result)

    async def _call(
        self,
        batch: list[_Job],
        on_stall: Callable[[asyncio.Future[list[bytes]]], object] | None = None,
    ) -> list[bytes]:
        model, output = batch[0].model, batch[0].output
        rows = CanonicalRows.concat([j.rows for j in batch])
        loop = asyncio.get_running_loop()
        start = time.perf_counter()
        with batch_span("model.predict", [j.span for j in batch]) as span:
            if span.is_recording():
                model_attributes(span, model)
                span.set_attribute("batch.size", len(rows))
                span.set_attribute("batch.requests", len(batch))
            call = loop.run_in_executor(self._executor, model.predict_encoded, rows, output)
            try:
                result = await asyncio.wait_for(asyncio.shield(call), self.timeout)
            except TimeoutError:
                self._stall(call, model)
                if on_stall is not None:
                    on_stall(call)
                raise ModelTimeout(
                    f"model {model.name} version {model.version} did not answer within "
                    f"{self.timeout:g}s",
                    {"timeout_seconds": self.timeout},
                ) from None
        metrics.PREDICT_DURATION.labels(model.name, model.version).observe(
            time.perf_counter() - start
        )
        metrics.PREDICT_BATCH_ROWS.observe(len(rows))
        metrics.PREDICT_CALLS.labels(model.name, model.version).inc()
        return result

    def _stall(self, call: asyncio.Future[list[bytes]], model: LoadedModel) -> None:
        """Count a call past its deadline until it returns (the worker is unready meanwhile)."""
        self.stalled += 1
        metrics.PREDICT_TIMEOUTS.inc()
        log.error("model %s version %s stuck past %gs", model.name, model.version, self.timeout)

        def returned(_: object) -> None:
            self.stalled -= 1
            log.warning("the stuck model call of version %s returned", model.version)

        call.add_done_callback(returned)
