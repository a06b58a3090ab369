"""A model call that hangs: its request gets a 504 at the deadline, the worker reports unready
until the call returns, hits are still served, and misses get a 503 with Retry-After at once
instead of queueing behind it."""

from __future__ import annotations

from pathlib import Path

import httpx
import joblib
import pytest

from devtools.localstack.processes import wait_until
from tests.integration.chaos.conftest import Report
from tests.integration.conftest import ReplicaFactory
from tests.support.metrics import metric
from tests.support.models import HangingModel
from tests.support.traffic import Tally, ask

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

HANG = [[666.0, 0.0, 0.0, 0.0]]


def test_a_stuck_call_is_bounded_and_does_not_hold_anyone_else(
    replicas: ReplicaFactory, tmp_path: Path, report: Report
) -> None:
    joblib.dump(HangingModel(hang_seconds=6.0), tmp_path / "hanging.joblib")
    replica = replicas(
        MEMOSERVE_MODEL_URI=str(tmp_path / "hanging.joblib"),
        MEMOSERVE_MODEL_TRUST="pickle",  # a joblib file of a test class: code
        MEMOSERVE_WORKERS="1",
        MEMOSERVE_PREDICT_TIMEOUT_SECONDS="1",
    )
    tally = Tally()
    with httpx.Client(base_url=replica.url, timeout=10) as c:
        cached = [[1.0, 2.0, 3.0, 4.0]]
        assert ask(c, cached).body == b'{"predictions":[10.0]}'
        stuck = ask(c, HANG)
        assert stuck.status == 504  # at the deadline, not after the hang
        assert c.get("/readyz").status_code == 503
        assert c.get("/readyz").json()["status"] == "stalled"
        hit = ask(c, cached)
        tally.add(hit)
        assert (hit.status, hit.cache) == (200, "HIT")  # hits are not behind the stuck call
        miss = c.post("/invocations", json={"instances": [[2.0, 2.0, 2.0, 2.0]]})
        assert miss.status_code == 503
        assert miss.headers["retry-after"] == "1"
        assert miss.json()["error"]["code"] == "overloaded"
        assert metric(c, "memoserve_predict_timeouts_total") == 1
        # The hang ends: ready again, and misses are computed.
        wait_until(lambda: c.get("/readyz").status_code == 200, 15, "ready after the call returned")
        after = ask(c, [[2.0, 2.0, 2.0, 2.0]])
        tally.add(after)
        assert (after.status, after.body) == (200, b'{"predictions":[8.0]}')
    report.record(
        "A model call hangs 6 s (deadline 1 s): the 504 and a 503 meanwhile are by design",
        requests=tally.requests + 3,
        non_200=2,
    )
