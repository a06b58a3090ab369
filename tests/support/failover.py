"""Steady requests to one replica while its Redis master is killed: what each answer was."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from tests.support.payloads import dataframe_split


@dataclass
class FailoverRun:
    """Every status and ``X-Cache`` seen, when the master died and when hits came back."""

    statuses: list[int] = field(default_factory=list)
    outcomes: list[str] = field(default_factory=list)
    killed_at: float = 0.0
    resumed_at: float = 0.0

    def summary(self) -> str:
        return (
            f"{len(self.statuses)} requests, statuses {sorted(set(self.statuses))}; "
            f"{self.outcomes.count('BYPASS')} BYPASS; hits resumed "
            f"{self.resumed_at - self.killed_at:.2f}s after SIGKILL of the master"
        )


def through_failover(
    client: httpx.Client,
    rows: list[list[float]],
    kill: Callable[[], None],
    *,
    kill_after: int = 50,
    timeout: float = 40.0,
) -> FailoverRun:
    """Cycle through ``rows`` (cached already), ``kill`` the master after ``kill_after``
    requests, and stop once BYPASS was seen and the last 20 answers are hits again."""
    run = FailoverRun()
    start = time.monotonic()
    i = 0
    while time.monotonic() - start < timeout:
        r = client.post("/invocations", json=dataframe_split([rows[i % len(rows)]]))
        i += 1
        run.statuses.append(r.status_code)
        run.outcomes.append(r.headers.get("x-cache", "?"))
        if not run.killed_at and i == kill_after:
            kill()
            run.killed_at = time.monotonic()
        if run.killed_at and "BYPASS" in run.outcomes and run.outcomes[-20:] == ["HIT"] * 20:
            run.resumed_at = time.monotonic()
            break
        time.sleep(0.005)
    return run
