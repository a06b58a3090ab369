"""Coalescing: one computation per key however many callers; the Redis lock across replicas
against a real redis-server."""

from __future__ import annotations

import asyncio

import pytest

from service.background import BackgroundTasks
from service.cache.keys import KeySpace
from service.cache.redis import RedisCache
from service.coalesce import Direct, RedisLockCoalescer, SingleFlight


class Model:
    """Computes ``value-of-<key>`` for keys; each call recorded; a gate can hold calls."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.entered = asyncio.Event()

    def compute_for(self, keys: list[str]):  # type: ignore[no-untyped-def]
        async def compute(positions: list[int]) -> list[bytes]:
            asked = [keys[i] for i in positions]
            self.calls.append(asked)
            self.entered.set()
            await self.gate.wait()
            return [f"value-of-{k}".encode() for k in asked]

        return compute


async def test_direct_computes_every_key() -> None:
    model = Model()
    keys = ["a", "b"]
    assert await Direct().run(keys, model.compute_for(keys)) == [b"value-of-a", b"value-of-b"]
    assert model.calls == [["a", "b"]]


async def test_concurrent_callers_of_overlapping_keys_compute_each_key_once() -> None:
    flight, model = SingleFlight(Direct()), Model()
    model.gate.clear()
    first, second = ["k1", "k2"], ["k2", "k3"]
    a = asyncio.create_task(flight.run(first, model.compute_for(first)))
    await model.entered.wait()
    b = asyncio.create_task(flight.run(second, model.compute_for(second)))
    await asyncio.sleep(0)  # b registers k3 and waits on k2
    model.gate.set()
    assert await a == [b"value-of-k1", b"value-of-k2"]
    assert await b == [b"value-of-k2", b"value-of-k3"]
    assert model.calls == [["k1", "k2"], ["k3"]]


async def test_a_waiter_that_is_cancelled_does_not_cancel_the_shared_computation() -> None:
    flight, model = SingleFlight(Direct()), Model()
    model.gate.clear()
    keys = ["k"]
    owner = asyncio.create_task(flight.run(keys, model.compute_for(keys)))
    await model.entered.wait()
    waiter = asyncio.create_task(flight.run(keys, model.compute_for(keys)))
    other = asyncio.create_task(flight.run(keys, model.compute_for(keys)))
    await asyncio.sleep(0)
    waiter.cancel()  # its client went away
    await asyncio.sleep(0)
    model.gate.set()
    assert await owner == [b"value-of-k"]
    assert await other == [b"value-of-k"]
    assert waiter.cancelled()
    assert model.calls == [["k"]]


async def test_a_failure_reaches_every_waiter_and_leaves_nothing_in_flight() -> None:
    flight = SingleFlight(Direct())
    gate = asyncio.Event()

    async def fail(positions: list[int]) -> list[bytes]:
        await gate.wait()
        raise ValueError("refused")

    owner = asyncio.create_task(flight.run(["k"], fail))
    await asyncio.sleep(0)
    waiter = asyncio.create_task(flight.run(["k"], fail))
    await asyncio.sleep(0)
    gate.set()
    for task in (owner, waiter):
        with pytest.raises(ValueError, match="refused"):
            await task
    model = Model()
    assert await flight.run(["k"], model.compute_for(["k"])) == [b"value-of-k"]  # computed anew


def replica(redis: RedisCache, keys: KeySpace, wait_ms: int = 2000) -> RedisLockCoalescer:
    return RedisLockCoalescer(redis, keys, BackgroundTasks("t"), lock_ms=5000, wait_ms=wait_ms)


async def test_a_second_replica_waits_for_the_value_the_first_one_stores(
    shared_redis: RedisCache, keys: KeySpace
) -> None:
    a, b = replica(shared_redis, keys), replica(shared_redis, keys)
    row = [keys.row_prefix("m", "1", "predict") + "d"]
    model_a, model_b = Model(), Model()
    model_a.gate.clear()
    first = asyncio.create_task(a.run(row, model_a.compute_for(row)))
    await model_a.entered.wait()  # a holds the lock and computes
    second = asyncio.create_task(b.run(row, model_b.compute_for(row)))
    await asyncio.sleep(0.05)
    model_a.gate.set()
    values = await first
    await shared_redis.set_many(list(zip(row, values, strict=True)), 60)  # a's store
    assert await second == values
    assert model_b.calls == []  # b never computed
    await a.release(row)
    assert await shared_redis.run(lambda r: r.exists(keys.lock(row[0]))) == 0


async def test_a_lock_holder_that_stores_nothing_is_waited_out_then_computed(
    shared_redis: RedisCache, keys: KeySpace
) -> None:
    a, b = replica(shared_redis, keys), replica(shared_redis, keys, wait_ms=100)
    row = [keys.row_prefix("m", "1", "predict") + "e"]
    assert await a.run(row, Model().compute_for(row)) == [b"value-of-" + row[0].encode()]
    model_b = Model()  # a wrote nothing and kept its lock: b waits its bound, then computes
    assert await b.run(row, model_b.compute_for(row)) == [b"value-of-" + row[0].encode()]
    assert model_b.calls == [row]


async def test_abandoned_locks_are_freed(shared_redis: RedisCache, keys: KeySpace) -> None:
    background = BackgroundTasks("t")
    a = RedisLockCoalescer(shared_redis, keys, background, lock_ms=5000, wait_ms=100)
    row = [keys.row_prefix("m", "1", "predict") + "f"]
    await a.run(row, Model().compute_for(row))
    assert await shared_redis.run(lambda r: r.exists(keys.lock(row[0]))) == 1
    a.abandon(row)  # no-store: nothing will be written
    await background.drain()
    assert await shared_redis.run(lambda r: r.exists(keys.lock(row[0]))) == 0
