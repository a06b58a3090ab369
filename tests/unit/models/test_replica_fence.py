"""ReplicaFence: what one worker publishes, its siblings read before their next answer."""

from __future__ import annotations

from pathlib import Path

from service.models.manager import ModelManager
from service.models.replica_fence import ReplicaFence
from tests.support.sources import MovableAlias


def test_a_sibling_sees_a_publish_once_and_the_publisher_never(tmp_path: Path) -> None:
    a, b = ReplicaFence(tmp_path / "f"), ReplicaFence(tmp_path / "f")
    assert (a.changed(), b.changed()) == (None, None)  # nothing published yet
    a.publish("2")
    assert a.changed() is None
    assert b.changed() == "2"
    assert b.changed() is None
    late = ReplicaFence(tmp_path / "f")  # a worker started after the publish reads it too
    assert late.changed() == "2"
    for fence in (a, b, late):
        fence.close()


async def test_a_worker_fences_itself_before_answering_after_a_sibling_swapped(
    tmp_path: Path,
) -> None:
    source = MovableAlias("1")
    worker = ModelManager(source, replica_fence=ReplicaFence(tmp_path / "f"))
    await worker.refresh("start-up")
    sibling = ReplicaFence(tmp_path / "f")
    source.version = "2"
    sibling.publish("2")  # a sibling is about to answer with 2; no message is involved
    served = await worker.serving()  # the next answer: caught up first
    assert served is not None and served.version == "2"
    sibling.close()


async def test_a_rollback_overtaken_by_a_promotion_fences_the_sibling_left_behind(
    tmp_path: Path,
) -> None:
    """2 → 1 → 2 while one worker moved to 1 and the other never left 2: the one still on 2
    re-publishes 2, so the one on 1 does not answer 1 after its sibling answered 2."""
    source = MovableAlias("2")
    behind = ModelManager(source, replica_fence=ReplicaFence(tmp_path / "f"))
    ahead = ModelManager(source, replica_fence=ReplicaFence(tmp_path / "f"))
    await behind.refresh("start-up")
    await ahead.refresh("start-up")
    source.version = "1"
    await behind.refresh("pubsub")  # rolled back, and published 1
    source.version = "2"  # promoted again before `ahead` moved
    answered = await ahead.serving()  # fenced by 1, finds the alias on its own 2
    assert answered is not None and answered.version == "2"
    served = await behind.serving()
    assert served is not None and served.version == "2"
