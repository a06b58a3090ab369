"""MLflow set-up shared by the integration, chaos and image suites: quiet client calls, the
two-version iris model, and waiting until replicas answer a version."""

from __future__ import annotations

import threading
import time
import uuid
import warnings
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

import httpx

from memoserve_models import registry
from tests.support.payloads import dataframe_split

T = TypeVar("T")
PROBE = [[5.1, 3.5, 1.4, 0.2]]  # v1 of the two-version model says 0; v2 (classes rotated) 1


class HasUrl(Protocol):
    @property
    def url(self) -> str: ...


def mlflow_call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Set-up through MLflow's client, whose own deprecation and type-hint warnings are not
    what these tests check (pytest turns warnings into errors)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def register_v1_v2(tracking: str, prefix: str = "iris") -> str:
    """A fresh model name with v1@champion and an unaliased v2 whose answers differ (v1 says 0
    to PROBE, v2 says 1; label_shift 0 and 1, ten trees each)."""
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    mlflow_call(
        registry.register, "iris", name, tracking_uri=tracking, alias="champion", n_estimators=10
    )
    mlflow_call(
        registry.register, "iris", name, tracking_uri=tracking, label_shift=1, n_estimators=10
    )
    return name


def reset_to_v1(name: str, tracking: str) -> str:
    """Point @champion back at v1 (and check that it is the only alias) for the next test."""
    mlflow_call(registry.promote, name, "1", alias="champion", tracking_uri=tracking)
    rows = mlflow_call(registry.versions, name, tracking_uri=tracking)
    assert [(r["version"], r["aliases"]) for r in rows] == [("2", []), ("1", ["champion"])], rows
    return name


def ask(replica: HasUrl, rows: list[list[float]] = PROBE) -> httpx.Response:
    r = httpx.post(f"{replica.url}/invocations", json=dataframe_split(rows), timeout=10)
    assert r.status_code == 200, r.text
    return r


def wait_for_version(
    replicas: Sequence[HasUrl], version: str, timeout: float = 30, *, callers: int = 4
) -> float:
    """Seconds until every replica answers ``version``, asked by ``callers`` concurrent
    clients per replica (so that every worker gets requests), and then for one more second.

    Checked on every answer: no request a replica received after it had answered ``version``
    is answered with another version."""
    start = time.monotonic()
    first: dict[int, float] = {}  # replica -> when its first answer of `version` arrived
    answers: list[tuple[int, float, str]] = []  # (replica, sent at, version)
    lock = threading.Lock()

    def call(i: int) -> None:
        while True:
            now = time.monotonic()
            with lock:
                done = len(first) == len(replicas) and now > max(first.values()) + 1.0
            if done or now - start > timeout:
                return
            seen = ask(replicas[i]).headers["x-model-version"]
            with lock:
                answers.append((i, now, seen))
                if seen == version and i not in first:
                    first[i] = time.monotonic()
            time.sleep(0.005)

    threads = [
        threading.Thread(target=call, args=(i,))
        for i in range(len(replicas))
        for _ in range(callers)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(first) == len(replicas), f"not all replicas on {version} after {timeout}s"
    back = [(i, seen) for i, sent, seen in answers if sent > first[i] and seen != version]
    assert not back, f"replicas went back from {version} after answering it: {back[:5]}"
    return max(first.values()) - start
