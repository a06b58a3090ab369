"""The real Triton HTTP client (``tritonclient[http]``) against a live gunicorn replica over
Redis: health, metadata, and infer with binary and JSON tensors both ways, answering as
/invocations does for the same rows and from the same cache entries."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.http as triton

from devtools.localstack.processes import Replica, SentinelCluster
from memoserve_models import demo
from service.models.trust import DEFAULT_SKOPS_TRUSTED_TYPES
from tests.integration.conftest import ReplicaFactory
from tests.support.metrics import metric
from tests.support.payloads import IRIS_COLUMNS, IRIS_ROWS
from tests.support.payloads import dataframe_split as split

pytestmark = [
    pytest.mark.integration,
    # MLflow's own modules warn about their type hints when first imported; tritonclient's
    # gevent-based client about its monkey-patching.
    pytest.mark.filterwarnings("ignore:.*type hint.*:UserWarning"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]


@pytest.fixture(scope="module")
def iris_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The iris forest as an MLflow model directory saved with skops (no MLflow server)."""
    import mlflow.sklearn
    from mlflow.models import infer_signature

    x, _ = demo.iris_frame()
    model = demo.train_iris(n_estimators=10)
    path = tmp_path_factory.mktemp("oip") / "iris"
    mlflow.sklearn.save_model(
        model,
        str(path),
        signature=infer_signature(x, model.predict(x)),
        serialization_format="skops",
        skops_trusted_types=list(DEFAULT_SKOPS_TRUSTED_TYPES),
    )
    return path


@pytest.fixture(scope="module")
def replica(
    tmp_path_factory: pytest.TempPathFactory, iris_dir: Path, sentinel_cluster: SentinelCluster
) -> Iterator[Replica]:
    """One replica (two workers sharing Redis) for the module: each start costs seconds."""
    replicas = ReplicaFactory(tmp_path_factory.mktemp("oip-replica"))
    try:
        yield replicas(
            MEMOSERVE_MODEL_URI=str(iris_dir),
            MEMOSERVE_REDIS_SENTINELS=sentinel_cluster.sentinel_addresses,
        )
    finally:
        replicas.stop()


@pytest.fixture
def client(replica: Replica) -> Iterator[triton.InferenceServerClient]:
    c = triton.InferenceServerClient(replica.url.removeprefix("http://"))
    yield c
    c.close()


def matrix_input(rows: list[list[float]], binary: bool) -> triton.InferInput:
    arr = np.asarray(rows, dtype=np.float64)
    tensor = triton.InferInput("input-0", list(arr.shape), "FP64")
    tensor.set_data_from_numpy(arr, binary_data=binary)
    return tensor


def column_inputs(rows: list[list[float]], binary: bool) -> list[triton.InferInput]:
    inputs = []
    for j, name in enumerate(IRIS_COLUMNS):
        col = np.asarray([r[j] for r in rows], dtype=np.float64)
        tensor = triton.InferInput(name, [len(rows)], "FP64")
        tensor.set_data_from_numpy(col, binary_data=binary)
        inputs.append(tensor)
    return inputs


def invocations(replica: Replica, rows: list[list[float]], output: str) -> tuple[Any, str]:
    r = httpx.post(f"{replica.url}/invocations?output={output}", json=split(rows))
    assert r.status_code == 200, r.text
    return r.json()["predictions"], r.headers["x-cache"]


def test_health_and_metadata(client: triton.InferenceServerClient, iris_dir: Path) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("iris")
    assert not client.is_model_ready("nope")
    server = client.get_server_metadata()
    assert "binary_tensor_data" in server["extensions"]
    meta = client.get_model_metadata("iris")
    assert meta["name"] == "iris" and len(meta["versions"]) == 1
    assert client.is_model_ready("iris", meta["versions"][0])
    assert [(i["name"], i["datatype"]) for i in meta["inputs"]] == [
        (c, "FP64") for c in IRIS_COLUMNS
    ]
    assert {o["name"]: o["datatype"] for o in meta["outputs"]} == {
        "predict": "INT64",
        "predict_proba": "FP64",
    }
    with pytest.raises(triton.InferenceServerException, match="no model named 'nope'"):
        client.get_model_metadata("nope")


@pytest.mark.parametrize("binary_in", [True, False], ids=["binary-in", "json-in"])
@pytest.mark.parametrize("binary_out", [True, False], ids=["binary-out", "json-out"])
def test_infer_answers_as_invocations(
    client: triton.InferenceServerClient, replica: Replica, binary_in: bool, binary_out: bool
) -> None:
    rows = IRIS_ROWS
    outputs = [
        triton.InferRequestedOutput("predict", binary_data=binary_out),
        triton.InferRequestedOutput("predict_proba", binary_data=binary_out),
    ]
    for inputs in ([matrix_input(rows, binary_in)], column_inputs(rows, binary_in)):
        result = client.infer("iris", inputs, outputs=outputs, request_id="r-1")
        response = result.get_response()
        assert response["id"] == "r-1" and response["model_name"] == "iris"
        for output in response["outputs"]:  # binary when asked, as the extension says
            assert ("binary_data_size" in output.get("parameters", {})) is binary_out
            assert ("data" in output) is not binary_out
        predict, proba = result.as_numpy("predict"), result.as_numpy("predict_proba")
        assert predict is not None and proba is not None
        assert predict.dtype == np.int64 and proba.shape == (len(rows), 3)
        assert predict.tolist() == invocations(replica, rows, "predict")[0]
        assert proba.tolist() == invocations(replica, rows, "predict_proba")[0]
    # No outputs asked for: the server's default output, binary as tritonclient then asks.
    result = client.infer("iris", [matrix_input(rows, binary_in)])
    assert result.as_numpy("predict").tolist() == invocations(replica, rows, "predict")[0]
    assert result.as_numpy("predict_proba") is None


def test_a_miss_through_invocations_is_a_hit_through_v2(
    client: triton.InferenceServerClient, replica: Replica
) -> None:
    rows = [[6.1, 2.8, 4.7, 1.2], [7.7, 3.8, 6.7, 2.2]]  # rows no other test asks for
    expected, outcome = invocations(replica, rows, "predict")
    assert outcome == "MISS"
    with httpx.Client(base_url=replica.url) as http:
        hits = metric(http, "memoserve_cache_results_total", result="hit")
        result = client.infer("iris", [matrix_input(rows, binary=True)])
        assert result.as_numpy("predict").tolist() == expected
        assert metric(http, "memoserve_cache_results_total", result="hit") == hits + len(rows)
        body = {
            "inputs": [
                {"name": "input-0", "shape": [2, 4], "datatype": "FP64", "data": rows},
            ]
        }
        r = http.post("/v2/models/iris/infer", json=body)
        assert r.headers["x-cache"] == "HIT", r.text
        assert r.json()["outputs"][0]["data"] == expected
