"""Arms: the canary's sticky share of routing keys, pinned versions, and the arm of a request."""

from __future__ import annotations

import pytest

from service.errors import ModelNotFound, NotReady
from service.models.arms import Arm, ServingArms, canary_takes, route_bucket
from service.models.manager import ModelManager
from tests.support.sources import MovableAlias

KEYS = [f"user-{i}".encode() for i in range(2000)]


def test_ten_percent_of_2000_keys_go_to_the_canary() -> None:
    share = sum(canary_takes(k, 10) for k in KEYS) / len(KEYS)
    assert 0.07 <= share <= 0.13, share


def test_a_key_always_gets_the_same_arm_and_the_bucket_is_not_salted() -> None:
    first = [canary_takes(k, 10) for k in KEYS]
    assert [canary_takes(k, 10) for k in KEYS] == first
    # Pinned values: another process (replica, restart) must compute the same buckets, which
    # Python's salted hash() would not.
    assert route_bucket(b"user-0") == 4593


def test_raising_the_percent_only_moves_keys_onto_the_canary() -> None:
    at_10 = {k for k in KEYS if canary_takes(k, 10)}
    at_25 = {k for k in KEYS if canary_takes(k, 25)}
    assert at_10 < at_25
    assert not any(canary_takes(k, 0) for k in KEYS)
    assert all(canary_takes(k, 100) for k in KEYS)


async def loaded(version: str, alias: str = "champion") -> ModelManager:
    source = MovableAlias(version)
    source.alias = alias
    manager = ModelManager(source, arm=alias)
    await manager.refresh("test")
    return manager


async def test_the_champion_answers_everything_until_the_canary_is_loaded() -> None:
    champion = await loaded("1")
    canary = ModelManager(MovableAlias("2"), arm="canary")
    arms = ServingArms(champion, canary=canary, canary_percent=100)
    assert arms.route(lambda: b"k") is Arm.CHAMPION
    await canary.refresh("test")
    assert arms.route(lambda: b"k") is Arm.CANARY
    assert ServingArms(champion, canary=canary).route(lambda: b"k") is Arm.CHAMPION  # 0 %


async def test_the_route_key_is_only_computed_when_a_canary_is_in_play() -> None:
    def never() -> bytes:
        raise AssertionError("no canary: the routing key is not needed")

    assert ServingArms(await loaded("1")).route(never) is Arm.CHAMPION


async def test_a_pinned_version_names_its_arm_and_an_unserved_one_is_404() -> None:
    arms = ServingArms(
        await loaded("1"), canary=await loaded("2", "canary"), shadow=await loaded("3", "shadow")
    )
    assert [arms.pinned(v) for v in ("1", "2", "3")] == [Arm.CHAMPION, Arm.CANARY, Arm.SHADOW]
    with pytest.raises(ModelNotFound) as refused:
        arms.pinned("9")
    assert refused.value.details == {"serving": {"champion": "1", "canary": "2", "shadow": "3"}}
    with pytest.raises(NotReady):
        ServingArms(ModelManager(MovableAlias("1"))).pinned("1")


async def test_managers_are_found_by_their_alias() -> None:
    champion, canary = await loaded("1"), await loaded("2", "challenger")
    arms = ServingArms(champion, canary=canary)
    assert arms.for_alias("challenger") == [canary]
    assert arms.for_alias("champion") == [champion]
    assert arms.for_alias("other") == []
