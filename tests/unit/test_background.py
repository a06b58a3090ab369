"""BackgroundTasks: tasks are held until they end, drained or cancelled, failures logged."""

from __future__ import annotations

import asyncio
import gc

import pytest

from service.background import BackgroundTasks


async def test_a_spawned_task_survives_garbage_collection_and_drain_waits_for_it() -> None:
    tasks = BackgroundTasks("t")
    release = asyncio.Event()
    done: list[int] = []

    async def work() -> None:
        await release.wait()
        done.append(1)

    tasks.spawn(work())
    gc.collect()  # the caller kept no reference: the helper's must keep it alive
    assert len(tasks) == 1
    release.set()
    await tasks.drain()
    assert done == [1]
    assert len(tasks) == 0


async def test_cancel_stops_what_is_running() -> None:
    tasks = BackgroundTasks("t")
    started = asyncio.Event()

    async def forever() -> None:
        started.set()
        await asyncio.Event().wait()

    task = tasks.spawn(forever())
    await started.wait()
    await tasks.cancel()
    assert task.cancelled()
    assert len(tasks) == 0


async def test_a_failure_is_logged_with_the_helpers_name(caplog: pytest.LogCaptureFixture) -> None:
    tasks = BackgroundTasks("cache write")

    async def fail() -> None:
        raise RuntimeError("boom")

    tasks.spawn(fail())
    await tasks.drain()
    assert "cache write task failed: RuntimeError: boom" in caplog.text
