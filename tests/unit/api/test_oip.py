"""Open Inference Protocol (V2) in-process: routes, tensors in every accepted layout, the binary
extension, cache sharing with /invocations, and every bad request a 4xx ``{"error": "..."}``."""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest

from service.api.oip_codec import output_tensor, parse_infer
from service.errors import InvalidInput
from service.rows.schema import ColumnSpec, InputSchema
from service.settings import Settings
from tests.support.app import AppUnderTest, app_under_test
from tests.support.payloads import IRIS_COLUMNS, IRIS_ROWS
from tests.support.payloads import dataframe_split as split

pytestmark = pytest.mark.filterwarnings("ignore:.*NO REDIS.*")
INFER = "/v2/models/iris/infer"


@pytest.fixture(scope="module")
async def served(iris_path: Path) -> AsyncIterator[AppUnderTest]:
    settings = Settings(
        model_uri=str(iris_path), model_version="1", max_rows=10, max_body_bytes=4000
    )
    async with app_under_test(settings) as served:
        yield served


@pytest.fixture
def client(served: AppUnderTest) -> httpx.AsyncClient:
    return served.client


def matrix(rows: list[list[float]], **extra: Any) -> dict[str, Any]:
    flat = [v for r in rows for v in r]
    tensor = {"name": "input-0", "shape": [len(rows), 4], "datatype": "FP64", "data": flat}
    return {"inputs": [tensor], **extra}


def columns(rows: list[list[float]], shape_tail: list[int] | None = None) -> dict[str, Any]:
    return {
        "inputs": [
            {
                "name": c,
                "shape": [len(rows), *(shape_tail or [])],
                "datatype": "FP64",
                "data": [r[j] for r in rows],
            }
            for j, c in enumerate(IRIS_COLUMNS)
        ]
    }


def binary_body(header: dict[str, Any], *chunks: bytes) -> tuple[bytes, dict[str, str]]:
    head = orjson.dumps(header)
    headers = {
        "Inference-Header-Content-Length": str(len(head)),
        "Content-Type": "application/octet-stream",
    }
    return head + b"".join(chunks), headers


def split_answer(r: httpx.Response) -> tuple[dict[str, Any], bytes]:
    n = int(r.headers["inference-header-content-length"])
    return orjson.loads(r.content[:n]), r.content[n:]


async def test_health_and_metadata(client: httpx.AsyncClient) -> None:
    assert (await client.get("/v2/health/live")).status_code == 200
    assert (await client.get("/v2/health/ready")).status_code == 200
    assert (await client.get("/v2/models/iris/ready")).status_code == 200
    assert (await client.get("/v2/models/iris/versions/1/ready")).status_code == 200
    server = (await client.get("/v2")).json()
    assert server["name"] == "memoserve" and "binary_tensor_data" in server["extensions"]
    meta = (await client.get("/v2/models/iris")).json()
    assert meta["name"] == "iris" and meta["versions"] == ["1"]
    assert meta["inputs"] == [{"name": c, "datatype": "FP64", "shape": [-1]} for c in IRIS_COLUMNS]
    assert meta["outputs"] == [
        {"name": "predict", "datatype": "INT64", "shape": [-1]},
        {"name": "predict_proba", "datatype": "FP64", "shape": [-1, 3]},
    ]
    assert (await client.get("/v2/models/iris/versions/1")).json() == meta


async def test_openapi_lists_the_v2_routes(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert {
        "/v2",
        "/v2/health/live",
        "/v2/health/ready",
        "/v2/models/{name}",
        "/v2/models/{name}/ready",
        "/v2/models/{name}/versions/{version}",
        "/v2/models/{name}/versions/{version}/ready",
        "/v2/models/{name}/infer",
        "/v2/models/{name}/versions/{version}/infer",
    } <= set(paths)
    assert "requestBody" in paths["/v2/models/{name}/infer"]["post"]


@pytest.mark.parametrize(
    ("method", "path", "status", "fragment"),
    [
        ("GET", "/v2/models/nope", 404, "no model named 'nope'"),
        ("GET", "/v2/models/nope/ready", 404, "no model named"),
        ("GET", "/v2/models/iris/versions/7", 404, "no version '7'"),
        ("GET", "/v2/models/iris/versions/7/ready", 404, "no version '7'"),
        ("POST", "/v2/models/nope/infer", 404, "no model named"),
        ("POST", "/v2/models/iris/versions/7/infer", 404, "no version '7'"),
        ("GET", "/v2/elsewhere", 404, "Not Found"),
        ("GET", INFER, 405, "Method Not Allowed"),
    ],
)
async def test_unknown_models_versions_and_routes(
    client: httpx.AsyncClient, method: str, path: str, status: int, fragment: str
) -> None:
    r = await client.request(method, path, json=matrix(IRIS_ROWS[:1]))
    assert r.status_code == status
    assert set(r.json()) == {"error"} and fragment in r.json()["error"]


async def test_before_the_first_load_everything_but_live_is_503(
    served: AppUnderTest, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(served.dataplane.manager, "current", None)
    client = served.client
    assert (await client.get("/v2/health/live")).status_code == 200
    assert (await client.get("/v2/health/ready")).status_code == 503
    for path in ("/v2/models/iris/ready", "/v2/models/iris"):
        r = await client.get(path)
        assert r.status_code == 503 and "not loaded yet" in r.json()["error"]
    r = await client.post(INFER, json=matrix(IRIS_ROWS[:1]))
    assert r.status_code == 503 and set(r.json()) == {"error"}


async def test_other_protocols_keep_their_error_body(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/models/iris:predict", content=b"{")
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "invalid_input"
    r = await client.get("/v1/models/nope")
    assert r.json()["error"]["code"] == "model_not_found"


async def test_every_layout_is_one_answer_and_one_cache_entry(client: httpx.AsyncClient) -> None:
    """A MISS through /invocations is a HIT through V2, in every tensor layout."""
    rows = IRIS_ROWS[:2]
    first = await client.post("/invocations", json=split(rows))
    assert first.headers["x-cache"] == "MISS"
    nested = matrix(rows)
    nested["inputs"][0]["data"] = rows
    layouts = [
        matrix(rows),
        nested,
        columns(rows),
        columns(rows, [1]),
        {**columns(rows), "parameters": {"content_type": "pd"}},
        matrix(rows, parameters={"content_type": "np"}),
    ]
    for body in layouts:
        r = await client.post(INFER, json=body)
        assert r.status_code == 200, r.text
        assert r.headers["x-cache"] == "HIT" and r.headers["x-model-version"] == "1"
        assert r.json() == {
            "model_name": "iris",
            "model_version": "1",
            "outputs": [{"name": "predict", "datatype": "INT64", "shape": [2], "data": [0, 2]}],
        }


async def test_requested_outputs_and_id(client: httpx.AsyncClient) -> None:
    body = matrix(IRIS_ROWS[:2], id="req-1", outputs=[{"name": "predict_proba"}])
    r = await client.post(INFER, json=body)
    answer = r.json()
    assert answer["id"] == "req-1"
    (proba,) = answer["outputs"]
    assert proba["name"] == "predict_proba" and proba["shape"] == [2, 3]
    assert proba["datatype"] == "FP64" and len(proba["data"]) == 6
    v1 = await client.post("/invocations?output=predict_proba", json=split(IRIS_ROWS[:2]))
    assert np.asarray(v1.json()["predictions"]).ravel().tolist() == proba["data"]
    both = [{"name": "predict"}, {"name": "predict_proba"}]
    r = await client.post(INFER, json=matrix(IRIS_ROWS[:2], outputs=both))
    assert [o["name"] for o in r.json()["outputs"]] == ["predict", "predict_proba"]
    assert r.headers["x-cache"] == "HIT"  # both outputs were cached above


@pytest.mark.parametrize("datatype", ["FP64", "FP32"])
async def test_binary_inputs_and_outputs(client: httpx.AsyncClient, datatype: str) -> None:
    rows = [[5.5, 2.5, 4.0, 1.25]]  # exact in float32: the same rows as JSON's
    arr = np.asarray(rows, dtype="<f8" if datatype == "FP64" else "<f4")
    tensor = {
        "name": "input-0",
        "shape": [1, 4],
        "datatype": datatype,
        "parameters": {"binary_data_size": arr.nbytes},
    }
    outputs = [
        {"name": "predict", "parameters": {"binary_data": True}},
        {"name": "predict_proba", "parameters": {"binary_data": False}},
    ]
    body, headers = binary_body({"inputs": [tensor], "outputs": outputs}, arr.tobytes())
    r = await client.post(INFER, content=body, headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/octet-stream"
    header, rest = split_answer(r)
    predict, proba = header["outputs"]
    assert predict["parameters"] == {"binary_data_size": 8} and "data" not in predict
    assert np.frombuffer(rest, "<i8").tolist() == [1]
    assert len(proba["data"]) == 3
    r = await client.post("/invocations", json=split(rows))
    assert r.json() == {"predictions": [1]} and r.headers["x-cache"] == "HIT"


async def test_binary_data_output_asks_for_every_output_in_binary(
    client: httpx.AsyncClient,
) -> None:
    body = matrix(IRIS_ROWS[:1], parameters={"binary_data_output": True})
    header, rest = split_answer(await client.post(INFER, json=body))
    assert header["outputs"][0]["parameters"] == {"binary_data_size": 8}
    assert np.frombuffer(rest, "<i8").tolist() == [0]


def tensor(**over: Any) -> dict[str, Any]:
    return {"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": IRIS_ROWS[0], **over}


BAD: list[tuple[str, Any, str]] = [
    ("not an object", [1], "expected a JSON object"),
    ("no inputs", {"inputs": []}, "non-empty list"),
    ("id not a string", {"inputs": [tensor()], "id": 3}, '"id" must be a string'),
    ("input not an object", {"inputs": [3]}, "inputs[0] must be an object"),
    ("no name", {"inputs": [tensor(name=None)]}, 'needs a "name"'),
    ("bad shape", {"inputs": [tensor(shape="1x4")]}, "shape must be a list"),
    ("negative dim", {"inputs": [tensor(shape=[-1, 4])]}, "shape must be a list"),
    ("no rows", {"inputs": [tensor(shape=[0, 4], data=[])]}, "positive integers"),
    ("no width", {"inputs": [tensor(shape=[10**12, 0], data=[])]}, "positive integers"),
    ("datatype a list", {"inputs": [tensor(datatype=["FP64"])]}, "datatype ['FP64']"),
    ("3-D", {"inputs": [tensor(shape=[1, 2, 2])]}, "[rows, features]"),
    ("bad datatype", {"inputs": [tensor(datatype="BF16")]}, "datatype 'BF16'"),
    ("count mismatch", {"inputs": [tensor(shape=[2, 4])]}, "shape [2, 4] needs 8"),
    ("wrong width", {"inputs": [tensor(shape=[2, 2])]}, "takes [rows, 4]"),
    ("1-D matrix", {"inputs": [tensor(shape=[4])]}, "takes [rows, 4]"),
    ("no data", {"inputs": [tensor(data=None)]}, '"data" as a list'),
    ("too deep", {"inputs": [tensor(shape=[4], data=[[1], [2], [3], [4]])]}, "deeper"),
    ("strings", {"inputs": [tensor(data=["a", 1, 2, 3])]}, "FP64 data holds str"),
    ("bools", {"inputs": [tensor(data=[True, 1, 2, 3])]}, "holds bool"),
    ("int floats", {"inputs": [tensor(datatype="INT64", data=[1.5, 1, 2, 3])]}, "holds float"),
    ("int8 range", {"inputs": [tensor(datatype="INT8", data=[300, 1, 2, 3])]}, "range of INT8"),
    ("BYTES in number", {"inputs": [tensor(datatype="BYTES", data=list("abcd"))]}, "is BYTES"),
    ("NaN-free", {"inputs": [tensor(data=[1e999, 1, 2, 3])]}, "not valid JSON"),
    ("bad content type", {"inputs": [tensor()], "parameters": {"content_type": "x"}}, "'x'"),
    ("bad input content type", {"inputs": [tensor(parameters={"content_type": "b"})]}, "'b'"),
    ("np with two", {"inputs": [tensor(), tensor()], "parameters": {"content_type": "np"}}, "one"),
    ("unknown column", {**columns(IRIS_ROWS[:1]), "parameters": {"content_type": "pd"}}, ""),
    ("twice", {"inputs": columns(IRIS_ROWS[:1])["inputs"] * 2}, "given twice"),
    ("missing column", {"inputs": columns(IRIS_ROWS[:1])["inputs"][:3]}, "missing input"),
    ("unexpected output", {"inputs": [tensor()], "outputs": [{"name": "x"}]}, "output 'x'"),
    ("output twice", {"inputs": [tensor()], "outputs": [{"name": "predict"}] * 2}, "twice"),
    ("outputs not a list", {"inputs": [tensor()], "outputs": {"name": "p"}}, '"outputs"'),
    (
        "binary without header",
        {"inputs": [tensor(data=None, parameters={"binary_data_size": 1})]},
        "no I",
    ),
    ("too many rows", matrix(IRIS_ROWS * 4), "at most 10 per request"),
]


@pytest.mark.parametrize(("what", "body", "fragment"), BAD, ids=[b[0] for b in BAD])
async def test_bad_requests_are_4xx_naming_the_problem(
    client: httpx.AsyncClient, what: str, body: Any, fragment: str
) -> None:
    if what == "unknown column":
        body["inputs"][0]["name"] = "petal girth"
        fragment = "'petal girth' is not a column"
    content = orjson.dumps(body) if what != "NaN-free" else b'{"inputs": [{"data": [1e999]}]}'
    r = await client.post(INFER, content=content, headers={"Content-Type": "application/json"})
    expected = 413 if what == "too many rows" else 400
    assert r.status_code == expected, r.text
    error = r.json()
    assert set(error) == {"error"} and fragment in error["error"], error


@pytest.mark.parametrize(
    ("header_length", "extra", "size", "fragment"),
    [
        ("x", b"", 32, "not a length"),
        ("\u00b2", b"", 32, "not a length"),  # a digit to str.isdigit, not to int()
        ("100000", b"", 32, "not a length"),
        (None, b"", 40, "runs past"),
        (None, b"\0", 32, "1 bytes after"),
        (None, b"", 31, None),  # the remaining byte is trailing; 31 is no whole FP64 count
    ],
)
async def test_bad_binary_bodies(
    client: httpx.AsyncClient, header_length: str | None, extra: bytes, size: int, fragment: str
) -> None:
    arr = np.asarray([IRIS_ROWS[0]], dtype="<f8")
    t = tensor(data=None, parameters={"binary_data_size": size})
    body, headers = binary_body({"inputs": [t]}, arr.tobytes(), extra)
    sent: dict[str, str | bytes] = dict(headers)
    if header_length is not None:
        sent["Inference-Header-Content-Length"] = header_length.encode("latin-1")
    r = await client.post(INFER, content=body, headers=sent)
    assert r.status_code == 400 and set(r.json()) == {"error"}, r.text
    assert fragment is None or fragment in r.json()["error"]


async def test_binary_nan_is_refused_as_in_json(client: httpx.AsyncClient) -> None:
    arr = np.asarray([[np.nan, 1, 2, 3]], dtype="<f4")
    t = tensor(datatype="FP32", data=None, parameters={"binary_data_size": arr.nbytes})
    body, headers = binary_body({"inputs": [t]}, arr.tobytes())
    r = await client.post(INFER, content=body, headers=headers)
    assert r.status_code == 400 and "NaN and infinity are not accepted" in r.json()["error"]


async def test_body_limit_is_a_413_in_the_v2_shape(client: httpx.AsyncClient) -> None:
    r = await client.post(INFER, content=b" " * 5000, headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and "at most 4000" in r.json()["error"]


# --- the codec alone, on schemas the iris model does not have ----------------------------------

MIXED = InputSchema(
    (ColumnSpec("city", "string"), ColumnSpec("n", "long"), ColumnSpec("ok", "boolean"))
)


def bytes_tensor(items: list[bytes]) -> bytes:
    return b"".join(struct.pack("<I", len(i)) + i for i in items)


def test_binary_bytes_bool_and_int_columns() -> None:
    cities = bytes_tensor(["Zürich".encode(), b"Oslo"])
    ns = np.asarray([3, 4], "<i8").tobytes()
    oks = np.asarray([True, False]).tobytes()
    payload = {
        "inputs": [
            {"name": "ok", "shape": [2], "datatype": "BOOL", "parameters": {"binary_data_size": 2}},
            {"name": "city", "shape": [2, 1], "datatype": "BYTES", "data": None,
             "parameters": {"binary_data_size": len(cities)}},
            {"name": "n", "shape": [2], "datatype": "INT64",
             "parameters": {"binary_data_size": 16}},
        ]
    }  # fmt: skip
    parsed = parse_infer(payload, memoryview(oks + cities + ns), MIXED)
    assert parsed.rows.columns == ["ok", "city", "n"]
    assert parsed.rows.data == [[True, "Zürich", 3], [False, "Oslo", 4]]


@pytest.mark.parametrize(
    ("chunk", "fragment"),
    [
        (b"\x05\0\0", "cut short"),
        (b"\x09\0\0\0abc", "runs past"),
        (b"\x02\0\0\0\xff\xfe", "not UTF-8"),
    ],
)
def test_bad_binary_bytes(chunk: bytes, fragment: str) -> None:
    payload = {
        "inputs": [
            {"name": "city", "shape": [1], "datatype": "BYTES",
             "parameters": {"binary_data_size": len(chunk)}},
            {"name": "n", "shape": [1], "datatype": "INT64", "data": [1]},
            {"name": "ok", "shape": [1], "datatype": "BOOL", "data": [True]},
        ]
    }  # fmt: skip
    with pytest.raises(InvalidInput, match=fragment):
        parse_infer(payload, memoryview(chunk), MIXED)


def test_a_tensor_type_must_fit_its_column() -> None:
    payload = {
        "inputs": [
            {"name": "city", "shape": [1], "datatype": "FP64", "data": [1.0]},
            {"name": "n", "shape": [1], "datatype": "INT64", "data": [1]},
            {"name": "ok", "shape": [1], "datatype": "BOOL", "data": [True]},
        ]
    }
    with pytest.raises(InvalidInput, match="'city' is FP64, but column 'city' is string"):
        parse_infer(payload, None, MIXED)
    with pytest.raises(InvalidInput, match="no column names"):
        parse_infer(payload, None, InputSchema.positional(3))


@pytest.mark.parametrize(
    ("rows", "datatype", "shape", "data", "binary"),
    [
        ([b"1", b"2"], "INT64", [2], [1, 2], np.asarray([1, 2], "<i8").tobytes()),
        ([b"1.5", b"2"], "FP64", [2], [1.5, 2], np.asarray([1.5, 2], "<f8").tobytes()),
        ([b"true"], "BOOL", [1], [True], b"\x01"),
        ([b"[0.5,0.5]", b"[1,0]"], "FP64", [2, 2], [0.5, 0.5, 1, 0], None),
        ([b'"setosa"'], "BYTES", [1], ["setosa"], b"\x06\0\0\0setosa"),
        ([b'{"a":1}'], "BYTES", [1], ['{"a":1}'], None),
        ([b"[1]", b"[1,2]"], "BYTES", [2], ["[1]", "[1,2]"], None),
    ],
)
def test_outputs_as_tensors(
    rows: list[bytes], datatype: str, shape: list[int], data: list[Any], binary: bytes | None
) -> None:
    as_json = output_tensor("predict", rows, False)
    assert as_json.meta == {"name": "predict", "datatype": datatype, "shape": shape, "data": data}
    as_binary = output_tensor("predict", rows, True)
    assert "data" not in as_binary.meta and as_binary.binary is not None
    assert as_binary.meta["parameters"] == {"binary_data_size": len(as_binary.binary)}
    if binary is not None:
        assert as_binary.binary == binary
