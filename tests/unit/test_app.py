"""The app in-process (no Redis: the in-process cache): protocols, headers and errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from service.settings import Settings
from tests.support.app import AppUnderTest, app_under_test
from tests.support.metrics import scraped
from tests.support.payloads import IRIS_COLUMNS, IRIS_ROWS
from tests.support.payloads import dataframe_split as split

pytestmark = pytest.mark.filterwarnings("ignore:.*NO REDIS.*")


@pytest.fixture
async def served(iris_path: Path) -> AsyncIterator[AppUnderTest]:
    settings = Settings(
        model_uri=str(iris_path), model_version="1", max_rows=10, max_body_bytes=2000
    )
    async with app_under_test(settings) as served:
        yield served


@pytest.fixture
def client(served: AppUnderTest) -> httpx.AsyncClient:
    return served.client


async def test_miss_then_hit_then_partial(client: httpx.AsyncClient) -> None:
    first = await client.post("/invocations", json=split(IRIS_ROWS[:1]))
    assert first.status_code == 200
    assert first.headers["x-cache"] == "MISS"
    assert first.headers["x-model-version"] == "1"
    assert first.json() == {"predictions": [0]}
    again = await client.post("/invocations", json=split(IRIS_ROWS[:1]))
    assert again.headers["x-cache"] == "HIT"
    assert again.content == first.content
    mixed = await client.post("/invocations", json=split(IRIS_ROWS[:2]))
    assert mixed.headers["x-cache"] == "PARTIAL"
    assert mixed.json() == {"predictions": [0, 2]}


async def test_all_mlflow_formats_give_one_answer(client: httpx.AsyncClient) -> None:
    row = IRIS_ROWS[1]
    payloads = [
        split([row]),
        {"dataframe_records": [dict(zip(reversed(IRIS_COLUMNS), reversed(row), strict=True))]},
        {"instances": [row]},
        {"inputs": [row]},
        {"inputs": {c: [v] for c, v in zip(IRIS_COLUMNS, row, strict=True)}},
    ]
    answers = [await client.post("/invocations", json=p) for p in payloads]
    assert [a.json() for a in answers] == [{"predictions": [2]}] * len(payloads)
    assert [a.headers["x-cache"] for a in answers] == ["MISS"] + ["HIT"] * (len(payloads) - 1)


async def test_predict_proba_is_its_own_output(client: httpx.AsyncClient) -> None:
    r = await client.post("/invocations?output=predict_proba", json=split(IRIS_ROWS[:1]))
    assert r.headers["x-cache"] == "MISS"
    probs = r.json()["predictions"][0]
    assert len(probs) == 3 and abs(sum(probs) - 1) < 1e-9
    r = await client.post("/invocations?output=predict_proba", json=split(IRIS_ROWS[:1]))
    assert r.headers["x-cache"] == "HIT"


async def test_cache_control(client: httpx.AsyncClient) -> None:
    body = split([IRIS_ROWS[2]])
    r = await client.post("/invocations", json=body, headers={"Cache-Control": "no-store"})
    assert r.headers["x-cache"] == "MISS"
    r = await client.post("/invocations", json=body)
    assert r.headers["x-cache"] == "MISS"  # no-store wrote nothing
    r = await client.post("/invocations", json=body)
    assert r.headers["x-cache"] == "HIT"
    r = await client.post("/invocations", json=body, headers={"Cache-Control": "no-cache"})
    assert r.headers["x-cache"] == "MISS"  # recomputed even though cached


async def test_kserve_v1(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/models/iris:predict", json={"instances": IRIS_ROWS})
    assert r.status_code == 200
    assert r.json() == {"predictions": [0, 2, 1]}
    meta = await client.get("/v1/models/iris")
    assert meta.json()["version"] == "1"
    assert [i["name"] for i in meta.json()["inputs"]] == IRIS_COLUMNS
    assert "predict_proba" in meta.json()["outputs"]


def _error(r: httpx.Response, status: int, code: str) -> str:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["code"] == code
    assert set(err) == {"code", "message", "details"}
    return str(err["message"])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty"),
        (b"not json", "not valid JSON"),
        (b'{"dataframe_split": {"columns": ["a"], "data": [[1]]}}', "unknown or missing columns"),
        (b'{"instances": [[1, 2, 3]]}', "the model expects 4"),
        (b'{"instances": [[1, 2, 3, "x"]]}', "expected a number"),
        (b'{"instances": [[1, 2, 3, NaN]]}', "not valid JSON"),
        (b'{"instances": [[1, 2, 3, 1e999]]}', "infinity"),
        (b'{"instances": []}', "no rows"),
        (b'{"rows": [[1, 2, 3, 4]]}', "expected exactly one of"),
    ],
)
async def test_bad_input_is_422_and_caches_nothing(
    served: AppUnderTest, content: bytes, message: str
) -> None:
    shared = served.dataplane.cache.shared
    before = len(shared)  # type: ignore[arg-type]
    r = await served.client.post(
        "/invocations", content=content, headers={"Content-Type": "application/json"}
    )
    assert message in _error(r, 422, "invalid_input")
    assert len(shared) == before  # type: ignore[arg-type]


async def test_limits_are_413(client: httpx.AsyncClient) -> None:
    r = await client.post("/invocations", json={"instances": [IRIS_ROWS[0]] * 11})
    assert "at most 10" in _error(r, 413, "payload_too_large")
    r = await client.post("/invocations", content=b"[" + b" " * 3000 + b"]")
    _error(r, 413, "payload_too_large")


async def test_unknown_model_and_route(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/models/nope:predict", json={"instances": [IRIS_ROWS[0]]})
    _error(r, 404, "model_not_found")
    _error(await client.get("/v1/models/nope"), 404, "model_not_found")
    _error(await client.get("/nothing-here"), 404, "not_found")
    r = await client.post("/invocations?output=transform", json=split(IRIS_ROWS[:1]))
    assert "not offered" in _error(r, 422, "invalid_input")


async def test_health_and_metrics(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    assert (await client.get("/readyz")).json()["version"] == "1"

    async def counted() -> tuple[float, float, float]:
        text = (await client.get("/metrics")).text
        return (
            scraped(text, "memoserve_cache_results_total", result="miss", layer="memory"),
            scraped(text, "memoserve_cache_results_total", result="hit", layer="memory"),
            scraped(text, "memoserve_requests_total", route="/invocations", status="200"),
        )

    before = await counted()
    await client.post("/invocations", json=split(IRIS_ROWS[:2]))  # two new rows
    await client.post("/invocations", json=split(IRIS_ROWS[:1]))  # one of them again
    after = await counted()
    assert [a - b for a, b in zip(after, before, strict=True)] == [2, 1, 2]
