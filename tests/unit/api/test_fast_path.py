"""The prediction routes' fast path: taken for exactly the two POST routes, answering as the
router would (status, error body, the route the access log and metrics name)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from starlette.middleware.exceptions import ExceptionMiddleware

from service.settings import Settings
from tests.support.app import AppUnderTest, app_under_test
from tests.support.payloads import IRIS_ROWS, dataframe_split

pytestmark = pytest.mark.filterwarnings("ignore:.*NO REDIS.*")
LINES: list[dict[str, Any]] = []


@pytest.fixture(scope="module")
async def served(iris_path: Path) -> AsyncIterator[AppUnderTest]:
    settings = Settings(model_uri=str(iris_path), model_version="1")
    async with app_under_test(settings, access_log=lambda b: LINES.append(orjson.loads(b))) as app:
        yield app


@pytest.fixture
def through_fastapi(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Paths of the requests that went on to FastAPI's inner stack (its ExceptionMiddleware)."""
    seen: list[str] = []
    inner = ExceptionMiddleware.__call__

    async def counting(self: ExceptionMiddleware, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            seen.append(scope["path"])
        await inner(self, scope, receive, send)

    monkeypatch.setattr(ExceptionMiddleware, "__call__", counting)
    return seen


@pytest.mark.parametrize("path", ["/invocations", "/v1/models/iris:predict"])
async def test_the_prediction_routes_skip_fastapi_and_are_logged_by_their_route(
    served: AppUnderTest, through_fastapi: list[str], path: str
) -> None:
    body = (
        dataframe_split(IRIS_ROWS[:1]) if path == "/invocations" else {"instances": [IRIS_ROWS[0]]}
    )
    LINES.clear()
    r = await served.client.post(path, json=body)
    assert r.status_code == 200, r.text
    assert r.headers["x-cache"] in ("MISS", "HIT") and r.headers["x-model-version"] == "1"
    bad = await served.client.post(path, content=b"{")
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_input"
    assert through_fastapi == []
    template = "/invocations" if path == "/invocations" else "/v1/models/{name}:predict"
    assert [(line["route"], line["status"]) for line in LINES] == [(template, 200), (template, 422)]


async def test_an_unknown_model_is_the_same_404(served: AppUnderTest) -> None:
    r = await served.client.post("/v1/models/nope:predict", json={"instances": [IRIS_ROWS[0]]})
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"


async def test_everything_else_goes_on_to_fastapi(
    served: AppUnderTest, through_fastapi: list[str]
) -> None:
    assert (await served.client.get("/invocations")).status_code == 405
    assert (await served.client.post("/v1/models/a/b:predict", json={})).status_code == 404
    assert (await served.client.get("/v1/models/iris")).status_code == 200
    assert through_fastapi == ["/invocations", "/v1/models/a/b:predict", "/v1/models/iris"]
