"""MicroBatcher: concurrent jobs of one version become one model call; a bad job fails alone."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Sequence
from typing import Any

import numpy as np
import pytest

from service.batching import MicroBatcher
from service.errors import ModelTimeout, Overloaded
from service.models.loaded import LoadedModel
from service.rows.canonical import CanonicalRows
from service.rows.schema import InputSchema


class Summing:
    """Sums each row; refuses negative values; a gate holds the first call."""

    outputs = ("predict",)

    def __init__(self) -> None:
        self.calls: list[int] = []
        self.gate = threading.Event()
        self.entered = threading.Event()

    def __call__(self, rows: CanonicalRows, output: str) -> Sequence[Any]:
        self.entered.set()
        self.gate.wait(5)
        values = np.asarray(rows.values)
        self.calls.append(len(values))
        if (values < 0).any():
            raise ValueError("negative input")
        return values.sum(axis=1)


def rows(*values: float) -> CanonicalRows:
    matrix = np.asarray([[v] for v in values], dtype=np.float64)
    return CanonicalRows(matrix, [r.tobytes() for r in matrix], None)


def model(predictor: Summing, version: str = "1") -> LoadedModel:
    return LoadedModel("m", version, InputSchema.positional(1), predictor)


@pytest.fixture
async def batcher() -> AsyncIterator[MicroBatcher]:
    b = MicroBatcher(max_rows=4, max_wait_seconds=0, threads=1)
    b.start()
    yield b
    await b.stop()


async def test_jobs_queued_behind_a_busy_model_merge_into_one_call(batcher: MicroBatcher) -> None:
    predictor = Summing()
    m = model(predictor)
    first = asyncio.create_task(batcher.submit(m, "predict", rows(1)))
    await asyncio.to_thread(predictor.entered.wait, 5)  # the model is busy with the first
    queued = [asyncio.create_task(batcher.submit(m, "predict", rows(v, v))) for v in (2, 3, 4)]
    await asyncio.sleep(0.01)
    predictor.gate.set()
    assert await first == [b"1.0"]
    assert [await q for q in queued] == [[b"2.0", b"2.0"], [b"3.0", b"3.0"], [b"4.0", b"4.0"]]
    assert predictor.calls == [1, 4, 2]  # 2+2 rows fill one batch of 4, the last 2 the next


async def test_versions_are_never_mixed_in_one_call(batcher: MicroBatcher) -> None:
    predictor = Summing()
    one, two = model(predictor, "1"), model(predictor, "2")
    first = asyncio.create_task(batcher.submit(one, "predict", rows(1)))
    await asyncio.to_thread(predictor.entered.wait, 5)
    others = [asyncio.create_task(batcher.submit(m, "predict", rows(5))) for m in (two, one, two)]
    await asyncio.sleep(0.01)
    predictor.gate.set()
    await first
    await asyncio.gather(*others)
    assert predictor.calls == [1, 2, 1]  # v2's two jobs together, then v1's


async def test_a_refused_job_fails_alone_not_its_neighbours(batcher: MicroBatcher) -> None:
    predictor = Summing()
    m = model(predictor)
    first = asyncio.create_task(batcher.submit(m, "predict", rows(1)))
    await asyncio.to_thread(predictor.entered.wait, 5)
    good = asyncio.create_task(batcher.submit(m, "predict", rows(2)))
    bad = asyncio.create_task(batcher.submit(m, "predict", rows(-1)))
    await asyncio.sleep(0.01)
    predictor.gate.set()
    await first
    assert await good == [b"2.0"]
    with pytest.raises(ValueError, match="negative"):
        await bad
    assert predictor.calls == [1, 2, 1, 1]  # the merged call failed; each job retried alone


async def test_a_stuck_call_fails_its_request_and_misses_fail_fast_until_it_returns() -> None:
    batcher = MicroBatcher(max_rows=4, max_wait_seconds=0, threads=1, timeout_seconds=0.05)
    batcher.start()
    predictor = Summing()  # its gate stays shut: the call hangs
    m = model(predictor)
    try:
        with pytest.raises(ModelTimeout):
            await batcher.submit(m, "predict", rows(1))
        assert batcher.stalled == 1
        with pytest.raises(Overloaded, match="running for more than"):
            await batcher.submit(m, "predict", rows(2))  # at once, not after another deadline
        predictor.gate.set()  # the stuck call returns
        while batcher.stalled:
            await asyncio.sleep(0.01)
        assert await batcher.submit(m, "predict", rows(3)) == [b"3.0"]
    finally:
        predictor.gate.set()
        await batcher.stop()


async def test_a_full_queue_answers_overloaded_at_once() -> None:
    batcher = MicroBatcher(max_rows=4, max_wait_seconds=0, threads=1, max_queued_rows=3)
    batcher.start()
    predictor = Summing()
    m = model(predictor)
    try:
        first = asyncio.create_task(batcher.submit(m, "predict", rows(1)))
        await asyncio.to_thread(predictor.entered.wait, 5)  # busy; the queue fills behind it
        queued = asyncio.create_task(batcher.submit(m, "predict", rows(2, 2)))
        await asyncio.sleep(0)
        with pytest.raises(Overloaded) as refused:
            await batcher.submit(m, "predict", rows(3, 3))  # 2 + 2 rows > 3
        assert refused.value.headers == {"Retry-After": "1"}
        predictor.gate.set()
        assert await first == [b"1.0"] and await queued == [b"2.0", b"2.0"]
    finally:
        predictor.gate.set()
        await batcher.stop()


async def test_a_lone_client_never_waits_for_rows_that_are_not_coming() -> None:
    batcher = MicroBatcher(max_rows=4, max_wait_seconds=30, threads=1)
    batcher.start()
    predictor = Summing()
    predictor.gate.set()
    try:
        for v in (1, 2):  # not one of these waits the 30 s
            assert await asyncio.wait_for(batcher.submit(model(predictor), "predict", rows(v)), 5)
    finally:
        await batcher.stop()
    assert predictor.calls == [1, 1]


async def test_under_load_the_batch_waits_for_the_clients_just_answered() -> None:
    batcher = MicroBatcher(max_rows=4, max_wait_seconds=30, threads=1)
    batcher.start()
    predictor = Summing()
    m = model(predictor)
    try:
        first = asyncio.create_task(batcher.submit(m, "predict", rows(1)))
        await asyncio.to_thread(predictor.entered.wait, 5)
        merged = [asyncio.create_task(batcher.submit(m, "predict", rows(v))) for v in (2, 3)]
        await asyncio.sleep(0.01)
        predictor.gate.set()
        await first
        await asyncio.gather(*merged)  # a call of two requests: load
        early = asyncio.create_task(batcher.submit(m, "predict", rows(4)))
        await asyncio.sleep(0.05)
        late = [asyncio.create_task(batcher.submit(m, "predict", rows(v))) for v in (5, 6, 7)]
        assert await asyncio.wait_for(early, 5) == [b"4.0"]  # the batch filled: no 30 s wait
        await asyncio.gather(*late)
    finally:
        await batcher.stop()
    assert predictor.calls == [1, 2, 4]
