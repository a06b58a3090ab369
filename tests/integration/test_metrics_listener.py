"""Under real gunicorn, `MEMOSERVE_METRICS_BIND` is a second listener that serves /metrics only."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from devtools.localstack.processes import LOOPBACK, free_port
from tests.integration.conftest import ReplicaFactory
from tests.support.payloads import IRIS_ROWS, dataframe_split

pytestmark = pytest.mark.integration


def test_the_metrics_port_serves_only_metrics(replicas: ReplicaFactory, iris_path: Path) -> None:
    port = free_port()
    replica = replicas(
        MEMOSERVE_MODEL_URI=str(iris_path),
        MEMOSERVE_WORKERS="2",
        MEMOSERVE_METRICS_BIND=f"{LOOPBACK}:{port}",
    )
    metrics_url = f"http://{LOOPBACK}:{port}"
    body = dataframe_split(IRIS_ROWS[:1])
    assert httpx.post(f"{replica.url}/invocations", json=body, timeout=10).status_code == 200
    # every worker serves both sockets: ask several times so that both answer
    for _ in range(6):
        scraped = httpx.get(f"{metrics_url}/metrics", timeout=10)
        assert scraped.status_code == 200
        assert "memoserve_requests_total" in scraped.text
        refused = httpx.post(f"{metrics_url}/invocations", json=body, timeout=10)
        assert refused.status_code == 404
        assert refused.json()["detail"] == "only /metrics is served on the metrics port"
    assert httpx.get(f"{metrics_url}/readyz", timeout=10).status_code == 404
    assert httpx.get(f"{replica.url}/metrics", timeout=10).status_code == 200
