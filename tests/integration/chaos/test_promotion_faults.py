"""Promotions while things break: under load, over a silently dead subscription, with MLflow
refusing connections or cutting an artifact download, and five promotions in a row against the
pod's disk. Every answer a 200; no replica answers an older version after a newer one."""

from __future__ import annotations

import time
import uuid
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from devtools.localstack.faults import FaultProxy
from devtools.localstack.processes import LOOPBACK, Proc, wait_until
from memoserve_models import registry
from tests.integration.chaos.conftest import Report
from tests.integration.conftest import ReplicaFactory
from tests.support.metrics import metric
from tests.support.traffic import Answer, Stream, Tally, ask_fresh
from tests.support.webhooks import alias_moved, deliver

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

T = TypeVar("T")
PROBE = [[5.9, 3.0, 4.2, 1.5]]
SECRET = "chaos-webhook-secret-of-32-bytes!"  # class 1 on v1, class 2 on v2 (label_shift=1)
# Where two versions do, the scenarios share the session's iris_v1_v2 (tests/integration/
# conftest.py: v1 label_shift 0 @champion, v2 label_shift 1, ten trees each, as register makes).


def quiet(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """MLflow's client warns about its own type hints; these tests do not check that."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def tracking(proc: Proc) -> str:
    return f"http://{LOOPBACK}:{proc.port}"


def register(mlflow: Proc, versions: int = 2, n_estimators: int = 10) -> str:
    """A fresh model with ``versions`` versions, v1 as @champion; odd and even versions answer
    differently."""
    name = f"chaos-{uuid.uuid4().hex[:6]}"
    for v in range(1, versions + 1):
        quiet(
            registry.register,
            "iris",
            name,
            tracking_uri=tracking(mlflow),
            alias="champion" if v == 1 else None,
            label_shift=(v + 1) % 2,
            n_estimators=n_estimators,
        )
    return name


def promote(mlflow: Proc, name: str, version: str) -> None:
    quiet(registry.promote, name, version, alias="champion", tracking_uri=tracking(mlflow))


def serving(name: str, uri: str, redis_url: str, cache: Path, **env: str) -> dict[str, str]:
    return {
        "MEMOSERVE_MODEL_URI": f"models:/{name}@champion",
        "MEMOSERVE_MLFLOW_TRACKING_URI": uri,
        "MEMOSERVE_REDIS_URL": redis_url,
        "MEMOSERVE_MODEL_CACHE_DIR": str(cache),
        **env,
    }


def stale_by_epoch(tally: Tally, epochs: list[tuple[float, str]]) -> list[Answer]:
    """Answers of another version than the epoch's target sent after the same replica had
    already answered the target in that epoch (epochs: when the alias moved, and where to).
    "After" is real time: sent once that answer was received, not merely in flight with it."""
    stale: list[Answer] = []
    for k, (start, target) in enumerate(epochs):
        end = epochs[k + 1][0] if k + 1 < len(epochs) else float("inf")
        inside = [a for a in tally.answers if a.status == 200 and start <= a.sent < end]
        first: dict[str, float] = {}
        for a in inside:
            if a.version == target:
                first[a.replica] = min(a.done, first.get(a.replica, a.done))
        stale += [a for a in inside if a.version != target and a.sent > first.get(a.replica, end)]
    return stale


def on_version(urls: list[str], version: str, timeout: float = 30) -> None:
    def every() -> bool:
        return all(ask_fresh(url, PROBE).version == version for url in urls)

    wait_until(every, timeout, f"every replica on version {version}")


def test_promotion_under_load_back_and_forth(
    chaos_mlflow: Proc,
    iris_v1_v2: str,
    redis_behind_proxy: tuple[Proc, FaultProxy],
    replicas: ReplicaFactory,
    tmp_path: Path,
    report: Report,
) -> None:
    _, redis_proxy = redis_behind_proxy
    name = iris_v1_v2
    env = serving(
        name,
        tracking(chaos_mlflow),
        f"redis://{redis_proxy.address}",
        tmp_path / "cache",
        MEMOSERVE_MODEL_POLL_SECONDS="1",
    )
    a, b = replicas(**env), replicas(**env)
    tally = Tally()
    epochs: list[tuple[float, str]] = [(time.monotonic(), "1")]
    streams = [
        Stream(r.url, tally, rows=PROBE, interval=0.02, keepalive=False, limit=3000)
        for r in (a, b, a, b)
    ]
    for s in streams:
        s.__enter__()
    try:
        for version in ("2", "1", "2"):
            # The epoch starts before the call: a poll may see the alias move before MLflow's
            # answer reaches us, and an answer of the new version sent then is not stale.
            epochs.append((time.monotonic(), version))
            promote(chaos_mlflow, name, version)
            on_version([a.url, b.url], version)
    finally:
        for s in streams:
            s.__exit__()
    stale = stale_by_epoch(tally, epochs)
    slow = [x for x in tally.answers if x.done - x.sent > 1.5]
    report.record(
        "Promotion v1→v2→v1→v2 under 4 streams (2 replicas × 2 workers)",
        requests=tally.requests,
        non_200=len(tally.non_200),
        stale=len(stale),
    )
    assert tally.non_200 == []
    assert stale == [], [(x.replica, x.version, x.sent) for x in stale[:5]]
    assert slow == [], f"{len(slow)} answers waited more than 1.5 s for a sibling's load"


def versions_seen(tally: Tally) -> dict[str, list[str]]:
    """Per replica, the versions it answered, in the order they were sent, repeats collapsed."""
    out: dict[str, list[str]] = {}
    for a in sorted((a for a in tally.answers if a.status == 200), key=lambda a: a.sent):
        seen = out.setdefault(a.replica, [])
        if not seen or seen[-1] != a.version:
            seen.append(a.version)
    return out


def test_mlflow_refusing_or_cutting_downloads_during_a_promotion(
    chaos_mlflow: Proc,
    iris_v1_v2: str,
    replicas: ReplicaFactory,
    tmp_path: Path,
    report: Report,
) -> None:
    """MLflow unreachable, then every response cut after 2 kB (an artifact download torn
    mid-file): the replica keeps serving v1, never flaps, never loads half a model, and moves
    to v2 once MLflow answers whole again."""
    name = iris_v1_v2
    proxy = FaultProxy(LOOPBACK, chaos_mlflow.port).start()
    try:
        cache = tmp_path / "cache"
        env = serving(
            name,
            f"http://{proxy.address}",
            "",
            cache,
            MEMOSERVE_MODEL_POLL_SECONDS="0.5",
            MEMOSERVE_WORKERS="1",
        )
        replica = replicas(**env)
        tally = Tally()
        with (
            Stream(replica.url, tally, rows=PROBE, interval=0.05, limit=3000),
            httpx.Client(base_url=replica.url, timeout=5) as c,
        ):
            for fault in ({"refuse": True}, {"cut_after": 2048}):
                proxy.set(**fault)  # type: ignore[arg-type]
                proxy.reset_live()  # MLflow's pooled keep-alive connections would pass
                promote(chaos_mlflow, name, "2")
                polls = metric(c, "memoserve_model_polls_total")
                wait_until(
                    lambda p=polls: metric(c, "memoserve_model_polls_total") >= p + 4, 30, "polls"
                )
                assert {a.version for a in tally.answers if a.status == 200} == {"1"}
                promote(chaos_mlflow, name, "1")  # back, for the next fault
            proxy.set()
            promote(chaos_mlflow, name, "2")
            on_version([replica.url], "2")
            wait_until(lambda: any(a.version == "2" for a in tally.answers), 10, "v2 streamed")
        staging = [
            p.name for p in (cache / name).iterdir() if p.name.startswith(".") and p.is_dir()
        ]
    finally:
        proxy.stop()
    report.record(
        "MLflow refusing, then cutting downloads mid-file, during promotions",
        requests=tally.requests,
        non_200=len(tally.non_200),
    )
    assert tally.non_200 == []
    assert versions_seen(tally) == {replica.url: ["1", "2"]}  # no flapping, no half model
    assert staging == []


def test_five_promotions_keep_two_versions_on_disk_one_download_each(
    chaos_mlflow: Proc,
    replicas: ReplicaFactory,
    tmp_path: Path,
    report: Report,
) -> None:
    name = register(chaos_mlflow, versions=5, n_estimators=150)  # a few MB each
    cache = tmp_path / "cache"
    env = serving(name, tracking(chaos_mlflow), "", cache, MEMOSERVE_MODEL_POLL_SECONDS="0.5")
    replica = replicas(**env)  # two workers sharing one cache directory
    sizes = []
    for version in ("2", "3", "4", "5", "1"):
        promote(chaos_mlflow, name, version)
        on_version([replica.url], version)
        wait_until(
            lambda: len([p for p in (cache / name).iterdir() if p.is_dir()]) <= 2,
            10,
            "old versions pruned",
        )
        sizes.append(sum(f.stat().st_size for f in (cache / name).rglob("*") if f.is_file()))
    kept = sorted(p.name for p in (cache / name).iterdir() if p.is_dir())
    with httpx.Client(base_url=replica.url, timeout=5) as c:
        downloads = metric(c, "memoserve_model_downloads_total")
    report.record("Five promotions of a few-MB model: disk and downloads", requests=5, non_200=0)
    assert kept == ["1", "5"]  # the serving version and its rollback target
    assert downloads == 6  # versions 1-5 and 1 again (pruned by then): once per pod, not per worker
    assert max(sizes) > 1_000_000, sizes  # the model really is a few MB


def test_a_silently_dead_subscription_during_a_promotion(
    chaos_mlflow: Proc,
    iris_v1_v2: str,
    redis_behind_proxy: tuple[Proc, FaultProxy],
    replicas: ReplicaFactory,
    tmp_path: Path,
    report: Report,
) -> None:
    """No poll: a webhook reaches replica a only, and every Redis connection alive (the
    subscriptions, the pool that publishes) goes silent without closing. Replica b must still
    switch: its listener notices the silence, resubscribes and re-reads the alias."""
    _, redis_proxy = redis_behind_proxy
    name = iris_v1_v2
    env = serving(
        name,
        tracking(chaos_mlflow),
        f"redis://{redis_proxy.address}",
        tmp_path / "cache",
        MEMOSERVE_MODEL_POLL_SECONDS="0",
        MEMOSERVE_WEBHOOK_SECRET=SECRET,
    )
    a, b = replicas(**env), replicas(**env)
    tally = Tally()
    with (
        Stream(a.url, tally, rows=PROBE, interval=0.05, keepalive=False, limit=3000),
        Stream(b.url, tally, rows=PROBE, interval=0.05, keepalive=False, limit=3000),
    ):
        wait_until(lambda: len(tally.answers) >= 10, 10, "traffic")
        assert redis_proxy.stall_live() > 0
        start = time.monotonic()
        promote(chaos_mlflow, name, "2")
        assert deliver(a.url, alias_moved(name, "2"), SECRET).status_code == 202
        on_version([a.url, b.url], "2")
        took = time.monotonic() - start
    stale = stale_by_epoch(tally, [(0.0, "1"), (start, "2")])
    report.record(
        "Pub/sub silently dead during a promotion (webhook to one replica only)",
        requests=tally.requests,
        non_200=len(tally.non_200),
        stale=len(stale),
    )
    print(f"\nsilent subscription: both replicas on v2 {took:.1f}s after the alias moved")
    assert tally.non_200 == []
    assert stale == []
