"""A replica stopped under a steady stream: SIGTERM drains it (no request that reached it is
lost, the master exits 0); SIGKILL of a worker fails only what was in flight on it, and the
master replaces the worker."""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import joblib
import pytest

from devtools.localstack.processes import wait_until
from tests.integration.chaos.conftest import Report
from tests.integration.conftest import ReplicaFactory
from tests.support.models import CountingModel
from tests.support.traffic import Stream, Tally

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

STREAMS = 4
_distinct = itertools.count(1)


def distinct_row(_: int) -> list[list[float]]:
    """A row no one asked before: a miss, so the request is in flight for the model's delay."""
    return [[float(next(_distinct)), 0.0, 0.0, 0.0]]


def workers_of(master: int) -> list[int]:
    with open(f"/proc/{master}/task/{master}/children") as f:
        return [int(p) for p in f.read().split()]


def slow_replica(replicas: ReplicaFactory, tmp_path: Path) -> tuple[str, int]:
    joblib.dump(CountingModel(str(tmp_path / "calls.txt"), delay=0.2), tmp_path / "slow.joblib")
    replica = replicas(
        MEMOSERVE_MODEL_URI=str(tmp_path / "slow.joblib"),
        MEMOSERVE_MODEL_TRUST="pickle",  # a joblib file of a test class: code
        MEMOSERVE_WORKERS="2",
    )
    return replica.url, replica.proc.popen.pid


@contextlib.contextmanager
def under_load(url: str, tally: Tally) -> Iterator[None]:
    """Four streams of misses over fresh connections, already flowing when this yields."""
    with contextlib.ExitStack() as streams:
        for _ in range(STREAMS):
            streams.enter_context(
                Stream(url, tally, rows=distinct_row, interval=0, keepalive=False, limit=400)
            )
        wait_until(lambda: sum(a.status == 200 for a in tally.answers) >= 8, 10, "traffic")
        yield


def test_sigterm_drains_every_request_in_flight(
    replicas: ReplicaFactory, tmp_path: Path, report: Report
) -> None:
    url, master = slow_replica(replicas, tmp_path)
    tally = Tally()
    with under_load(url, tally):
        term = time.monotonic()
        os.kill(master, signal.SIGTERM)
        wait_until(lambda: replicas.started[0].proc.popen.poll() is not None, 30, "the drain")
    drained = [a for a in tally.answers if a.status == 200 and a.sent < term < a.done]
    reached = [a for a in tally.answers if a.error != "ConnectError"]  # refused: never sent
    report.record(
        "Replica SIGTERM under 4 streams: drained, new connections refused",
        requests=len(reached),
        non_200=len([a for a in reached if a.status != 200]),
    )
    assert replicas.started[0].proc.popen.returncode == 0
    assert tally.lost == [], [a.error for a in tally.lost]
    assert {a.status for a in tally.answers} <= {200, 0}
    assert drained, "no request was in flight at the SIGTERM: the test proved nothing"


def test_sigkill_of_a_worker_fails_only_what_it_had_in_flight(
    replicas: ReplicaFactory, tmp_path: Path, report: Report
) -> None:
    url, master = slow_replica(replicas, tmp_path)
    tally = Tally()
    with under_load(url, tally):
        victim, *_ = workers_of(master)
        os.kill(victim, signal.SIGKILL)
        kill = time.monotonic()
        wait_until(
            lambda: sum(a.status == 200 and a.sent > kill + 0.5 for a in tally.answers) >= 8,
            30,
            "answers after the worker was replaced",
        )
    report.record(
        "Worker SIGKILL under 4 streams: only its in-flight requests fail",
        requests=tally.requests,
        non_200=len(tally.non_200),
    )
    assert len(workers_of(master)) == 2  # replaced
    assert len(tally.lost) <= STREAMS  # at most one in flight per stream, all on the victim
    assert all(a.sent < kill for a in tally.lost)
    assert [a for a in tally.non_200 if not a.lost] == []


def test_sigkill_of_the_master_takes_its_workers_down(
    replicas: ReplicaFactory, tmp_path: Path, report: Report
) -> None:
    """Without PR_SET_PDEATHSIG the workers kept serving, orphaned, after their master died."""
    url, master = slow_replica(replicas, tmp_path)
    workers = workers_of(master)
    assert len(workers) == 2
    os.kill(master, signal.SIGKILL)
    replicas.started[0].proc.popen.wait(10)

    def gone(pid: int) -> bool:
        try:
            with open(f"/proc/{pid}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0] == "Z"  # exited, not yet reaped
        except FileNotFoundError:
            return True

    wait_until(lambda: all(gone(w) for w in workers), 30, "the orphaned workers to stop")
    report.record("Master SIGKILL: its workers stop too", requests=0, non_200=0)
