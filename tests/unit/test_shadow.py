"""ShadowCopies: copies are compared off the request path, bounded, dropped and counted."""

from __future__ import annotations

import asyncio

from service.models.loaded import LoadedModel
from service.rows.canonical import CanonicalRows, RawRows, canonicalize
from service.rows.schema import InputSchema
from service.shadow import ShadowCopies
from tests.support.metrics import sample
from tests.support.sources import MovableAlias


def rows(n: int) -> CanonicalRows:
    return canonicalize(RawRows([[float(i)] for i in range(n)]), InputSchema.positional(1))


def model(version: str) -> LoadedModel:
    return MovableAlias(version).load(version)


def shadow_rows(serving: str, shadow: str, result: str) -> float:
    labels = {"serving_version": serving, "shadow_version": shadow, "result": result}
    return sample("memoserve_shadow_rows_total", **labels)


async def encoded(m: LoadedModel, output: str, r: CanonicalRows) -> list[bytes]:
    return m.predict_encoded(r, output)


async def test_agreement_is_counted_per_row() -> None:
    served, same, other = model("2"), model("2.0"), model("3")  # 2.0 answers as 2 does
    copies = ShadowCopies(encoded, max_pending=100)
    values = served.predict_encoded(rows(4), "predict")
    before = [shadow_rows("2", "2.0", "agree"), shadow_rows("2", "3", "disagree")]
    assert copies.offer(served, same, "predict", rows(4), values)
    # Row 0 sums to 0, so version 3 agrees there: 1 agree, 3 disagree.
    assert copies.offer(served, other, "predict", rows(4), values)
    await copies.drain()
    assert shadow_rows("2", "2.0", "agree") - before[0] == 4
    assert shadow_rows("2", "3", "disagree") - before[1] == 3
    assert copies.pending == 0


async def test_an_offer_never_waits_and_past_the_bound_copies_are_dropped() -> None:
    release = asyncio.Event()

    async def stuck(m: LoadedModel, output: str, r: CanonicalRows) -> list[bytes]:
        await release.wait()
        return m.predict_encoded(r, output)

    served, shadow = model("1"), model("5")
    copies = ShadowCopies(stuck, max_pending=10)
    dropped = sample("memoserve_shadow_dropped_rows_total")
    values = served.predict_encoded(rows(6), "predict")
    assert copies.offer(served, shadow, "predict", rows(6), values)  # returns while stuck
    assert copies.pending == 6
    assert not copies.offer(served, shadow, "predict", rows(6), values)  # 12 > 10
    assert sample("memoserve_shadow_dropped_rows_total") - dropped == 6
    release.set()
    await copies.drain()
    assert copies.pending == 0
    assert copies.offer(served, shadow, "predict", rows(6), values)  # room again
    await copies.drain()


async def test_a_failing_or_incompatible_shadow_is_counted_not_raised() -> None:
    async def broken(m: LoadedModel, output: str, r: CanonicalRows) -> list[bytes]:
        raise ValueError("shadow refuses")

    served = model("1")
    wide = MovableAlias("7", width=2).load("7")  # another signature
    values = served.predict_encoded(rows(2), "predict")
    errors, incompatible = shadow_rows("1", "8", "error"), shadow_rows("1", "7", "incompatible")
    copies = ShadowCopies(broken, max_pending=10)
    copies.offer(served, model("8"), "predict", rows(2), values)
    copies.offer(served, wide, "predict", rows(2), values)
    await copies.drain()
    assert shadow_rows("1", "8", "error") - errors == 2
    assert shadow_rows("1", "7", "incompatible") - incompatible == 2
    assert copies.pending == 0
