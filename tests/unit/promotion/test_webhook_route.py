"""The webhook route in-process: bad signatures are 401 and change nothing."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from service.promotion.signature import sign
from service.settings import Settings
from tests.support.app import AppUnderTest, app_under_test
from tests.support.sources import MovableAlias
from tests.support.waiting import eventually

SECRET = "k"


def delivery(name: str) -> bytes:
    return (
        b'{"entity": "model_version_alias", "action": "created", '
        b'"data": {"name": "%s", "alias": "champion", "version": "2"}}' % name.encode()
    )


def headers(
    body: bytes, secret: str = SECRET, ts: str | None = None, delivery: str = "d"
) -> dict[str, str]:
    ts = ts or str(int(time.time()))
    return {
        "X-MLflow-Delivery-Id": delivery,
        "X-MLflow-Timestamp": ts,
        "X-MLflow-Signature": sign(secret, delivery, ts, body),
    }


@pytest.fixture
def alias() -> MovableAlias:
    """``m@champion``, on version 1 until the test moves it."""
    return MovableAlias("1")


@pytest.fixture
async def served(alias: MovableAlias) -> AsyncIterator[AppUnderTest]:
    settings = Settings(webhook_secret=SECRET, model_poll_seconds=0)  # no Redis: no events
    async with app_under_test(settings, source=alias) as served:
        yield served


async def serves(client: httpx.AsyncClient, version: str) -> bool:
    return bool((await client.get("/readyz")).json()["version"] == version)


async def test_bad_stale_and_unsigned_deliveries_are_401_and_change_nothing(
    served: AppUnderTest, alias: MovableAlias
) -> None:
    client = served.client
    alias.version = "2"  # the alias moved: a delivery that got through would switch to it
    body = delivery("m")
    reads = alias.reads
    stale = str(int(time.time()) - 3600)
    for h in (headers(body, "wrong"), headers(body, ts=stale), {}):
        r = await client.post("/v1/webhooks/mlflow", content=body, headers=h)
        assert r.status_code == 401
        assert r.json()["error"]["code"] == "unauthorized"
    assert alias.reads == reads, "a refused delivery had the alias read"
    assert await serves(client, "1")

    # The same delivery, correctly signed, switches: the refused ones had what it takes.
    r = await client.post("/v1/webhooks/mlflow", content=body, headers=headers(body))
    assert (r.status_code, r.json()["status"]) == (202, "accepted")
    await eventually(lambda: serves(client, "2"), 5, "version 2 served")
    # A refresh of ours queues behind any a refused delivery could have started. The alias was
    # read by the delivery's refresh and by ours, and by nothing else.
    await served.dataplane.manager.refresh("test")
    assert alias.reads == reads + 2


async def test_a_valid_delivery_for_a_model_not_served_from_mlflow_is_ignored(
    iris_path: Path,
) -> None:
    settings = Settings(model_uri=str(iris_path), model_version="1", webhook_secret=SECRET)
    body = delivery("iris")
    async with app_under_test(settings) as served:
        r = await served.client.post("/v1/webhooks/mlflow", content=body, headers=headers(body))
    assert r.status_code == 200
    assert r.json()["status"].startswith("ignored")


async def test_a_replayed_delivery_is_answered_duplicate_and_triggers_nothing(
    served: AppUnderTest, alias: MovableAlias
) -> None:
    """No Redis here: this process's memory of delivery ids decides."""
    client, body = served.client, delivery("m")
    sent = headers(body, delivery="replayed")
    r = await client.post("/v1/webhooks/mlflow", content=body, headers=sent)
    assert (r.status_code, r.json()["status"]) == (202, "accepted")
    await served.dataplane.manager.refresh("test")  # behind the delivery's refresh
    reads = alias.reads
    alias.version = "2"  # a replay that got through would switch
    r = await client.post("/v1/webhooks/mlflow", content=body, headers=sent)
    assert r.status_code == 200
    assert r.json()["status"].startswith("ignored: duplicate delivery")
    assert alias.reads == reads, "the replay had the alias read"
    assert await serves(client, "1")
