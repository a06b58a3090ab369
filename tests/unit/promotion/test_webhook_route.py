"""The webhook route in-process: bad signatures are 401 and change nothing."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from service.app import create_app
from service.promotion.signature import sign
from service.settings import Settings

BODY = (
    b'{"entity": "model_version_alias", "action": "created", '
    b'"data": {"name": "iris", "alias": "champion", "version": "9"}}'
)


@pytest.fixture
async def client(iris_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(Settings(model_uri=str(iris_path), model_version="1", webhook_secret="k"))
    async with app.router.lifespan_context(app):
        await app.state.dataplane.manager.loaded.wait()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            yield c


def headers(secret: str, ts: str | None = None) -> dict[str, str]:
    ts = ts or str(int(time.time()))
    return {
        "X-MLflow-Delivery-Id": "d",
        "X-MLflow-Timestamp": ts,
        "X-MLflow-Signature": sign(secret, "d", ts, BODY),
    }


async def test_bad_and_stale_signatures_are_401(client: httpx.AsyncClient) -> None:
    for h in (headers("wrong"), headers("k", str(int(time.time()) - 3600)), {}):
        r = await client.post("/v1/webhooks/mlflow", content=BODY, headers=h)
        assert r.status_code == 401
        assert r.json()["error"]["code"] == "unauthorized"
    assert (await client.get("/readyz")).json()["version"] == "1"


async def test_a_valid_delivery_for_a_model_not_served_from_mlflow_is_ignored(
    client: httpx.AsyncClient,
) -> None:
    r = await client.post("/v1/webhooks/mlflow", content=BODY, headers=headers("k"))
    assert r.status_code == 200
    assert r.json()["status"].startswith("ignored")
