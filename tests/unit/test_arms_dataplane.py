"""The DataPlane with a canary and a shadow arm, in-process: a routing key picks one arm for
good, headers say which answered, ``?version=`` pins, each version has its own entries, and
the shadow's agreement is counted without delaying the answer."""

from __future__ import annotations

import asyncio

import httpx

from service.models.arms import Arm
from service.rows.canonical import RawRows, canonicalize
from service.settings import Settings
from tests.support.app import app_under_test
from tests.support.metrics import sample
from tests.support.sources import MovableAlias, VersionTimesSum

SETTINGS = Settings(
    model_uri="models:/m@champion",
    model_canary_alias="challenger",
    model_canary_percent=50,
    model_shadow_alias="shadow",
    model_poll_seconds=0,
)


def source() -> MovableAlias:
    champion = MovableAlias("1")
    challenger = champion.siblings["challenger"] = MovableAlias("2")
    shadow = champion.siblings["shadow"] = MovableAlias("1.0")  # answers as 1 does
    challenger.alias, shadow.alias = "challenger", "shadow"
    return champion


async def post(client: httpx.AsyncClient, x: float, **headers: str) -> httpx.Response:
    r = await client.post("/invocations", json={"inputs": [[x]]}, headers=headers)
    assert r.status_code == 200, r.text
    return r


async def test_a_route_key_sticks_to_one_arm_and_each_arm_answers_with_its_version() -> None:
    async with app_under_test(SETTINGS, source=source()) as served:
        client = served.client
        arms: dict[str, str] = {}
        for i in range(40):
            r = await post(client, 3.0, **{"X-Memoserve-Route-Key": f"user-{i}"})
            arms[f"user-{i}"] = r.headers["x-model-arm"]
            expected = {"champion": ("1", [3.0]), "canary": ("2", [6.0])}[arms[f"user-{i}"]]
            assert (r.headers["x-model-version"], r.json()["predictions"]) == expected
        assert set(arms.values()) == {"champion", "canary"}
        canary_hits = sample("memoserve_arm_requests_total", arm="canary", version="2", cache="hit")
        for key, arm in list(arms.items())[:10]:  # sticky, and from cache per version now
            r = await post(client, 3.0, **{"X-Memoserve-Route-Key": key})
            assert (r.headers["x-model-arm"], r.headers["x-cache"]) == (arm, "HIT")
        hit_now = sample("memoserve_arm_requests_total", arm="canary", version="2", cache="hit")
        assert hit_now - canary_hits == list(arms.values())[:10].count("canary")
        # Without a key the row decides: the same row, the same arm.
        by_row = {(await post(client, 5.0)).headers["x-model-arm"] for _ in range(5)}
        assert len(by_row) == 1


async def test_version_pins_and_an_unserved_version_is_404() -> None:
    async with app_under_test(SETTINGS, source=source()) as served:
        client = served.client
        for version, arm, answer in [("1", "champion", 2.0), ("2", "canary", 4.0)]:
            r = await client.post("/invocations?version=" + version, json={"inputs": [[2.0]]})
            assert (r.headers["x-model-arm"], r.json()["predictions"]) == (arm, [answer])
        r = await client.post("/invocations?version=7", json={"inputs": [[2.0]]})
        assert r.status_code == 404
        assert r.json()["error"]["details"]["serving"] == {
            "champion": "1",
            "canary": "2",
            "shadow": "1.0",
        }
        v2 = await client.post("/v2/models/m/versions/2/infer", json=v2_body(2.0))
        assert v2.status_code == 200, v2.text
        assert (v2.json()["model_version"], v2.headers["x-model-arm"]) == ("2", "canary")


def v2_body(x: float) -> dict[str, object]:
    return {"inputs": [{"name": "input-0", "shape": [1, 1], "datatype": "FP64", "data": [x]}]}


async def test_the_shadow_copies_misses_and_counts_agreement() -> None:
    async with app_under_test(SETTINGS, source=source()) as served:
        client = served.client
        shadow = served.dataplane.shadow
        assert shadow is not None

        def rows(serving: str, result: str) -> float:
            labels = {"serving_version": serving, "shadow_version": "1.0", "result": result}
            return sample("memoserve_shadow_rows_total", **labels)

        before = {v: (rows(v, "agree"), rows(v, "disagree")) for v in ("1", "2")}
        answered = [
            await post(client, 10.0 + i, **{"X-Memoserve-Route-Key": f"s{i}"}) for i in range(20)
        ]
        await shadow.drain()
        by_arm = {v: sum(r.headers["x-model-version"] == v for r in answered) for v in ("1", "2")}
        assert rows("1", "agree") - before["1"][0] == by_arm["1"]  # 1.0 answers as 1 does
        assert rows("2", "disagree") - before["2"][1] == by_arm["2"]
        hits = [await post(client, 10.0, **{"X-Memoserve-Route-Key": "s0"}) for _ in range(3)]
        await shadow.drain()
        assert {r.headers["x-cache"] for r in hits} == {"HIT"}  # hits are not copied
        total = rows("1", "agree") + rows("2", "disagree")
        assert total == before["1"][0] + before["2"][1] + len(answered)


async def test_a_swap_during_the_model_call_stores_the_answer_under_its_own_version() -> None:
    """The canary moves from 2 to 3 while a request's miss is being computed on 2: the answer
    says 2, and it is filed under 2's key, never 3's."""
    champion = source()
    challenger = champion.siblings["challenger"]
    every_key_canary = SETTINGS.model_copy(update={"model_canary_percent": 100})
    async with app_under_test(every_key_canary, source=champion) as served:
        dataplane = served.dataplane
        canary = dataplane.arms.managers[Arm.CANARY]
        model_2 = canary.current
        assert model_2 is not None and model_2.version == "2"
        challenger.go.clear()
        request = asyncio.create_task(post(served.client, 4.0))
        predictor = model_2.predictor
        assert isinstance(predictor, VersionTimesSum)
        await asyncio.to_thread(predictor.entered.wait, 5)  # the call on 2 has begun
        challenger.version = "3"
        assert await canary.refresh("test")  # swapped while the call waits
        challenger.go.set()
        r = await request
        assert (r.headers["x-model-version"], r.json()["predictions"]) == ("2", [8.0])
        await dataplane.cache.drain()
        row = canonicalize(RawRows([[4.0]]), model_2.schema).row_bytes
        stored = [
            await dataplane.cache.shared.get_many(
                dataplane.keys.rows(dataplane.keys.row_prefix("m", v, "predict"), row)
            )
            for v in ("2", "3")
        ]
        assert stored == [[b"8.0"], [None]]
        again = await post(served.client, 4.0)
        assert (again.headers["x-model-version"], again.headers["x-cache"]) == ("3", "MISS")
        assert again.json()["predictions"] == [12.0]
