"""The metrics port answers /metrics only; the service port keeps answering everything."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from service.settings import Settings
from tests.support.app import AppUnderTest, app_under_test
from tests.support.payloads import IRIS_ROWS, dataframe_split

pytestmark = pytest.mark.filterwarnings("ignore:.*NO REDIS.*")


@pytest.fixture
async def served(iris_path: Path) -> AsyncIterator[AppUnderTest]:
    settings = Settings(model_uri=str(iris_path), model_version="1", metrics_bind="0.0.0.0:9090")
    async with app_under_test(settings) as served:
        yield served


async def test_the_metrics_port_serves_only_metrics(served: AppUnderTest) -> None:
    # httpx's ASGI transport puts the URL's host and port in the scope's `server`
    metrics = await served.client.get("http://test:9090/metrics")
    assert metrics.status_code == 200 and b"memoserve_" in metrics.content
    for method, path in (("POST", "/invocations"), ("GET", "/readyz"), ("GET", "/metrics/")):
        refused = await served.client.request(
            method, f"http://test:9090{path}", json=dataframe_split(IRIS_ROWS[:1])
        )
        assert refused.status_code == 404, path
        assert refused.json() == {"detail": "only /metrics is served on the metrics port"}


async def test_the_service_port_serves_everything(served: AppUnderTest) -> None:
    ok = await served.client.post(
        "http://test:8080/invocations", json=dataframe_split(IRIS_ROWS[:1])
    )
    assert ok.status_code == 200
    assert (await served.client.get("http://test:8080/metrics")).status_code == 200


def test_a_metrics_bind_needs_a_port() -> None:
    with pytest.raises(ValueError, match="metrics_bind"):
        Settings(metrics_bind="0.0.0.0")
