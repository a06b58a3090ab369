"""Open Inference Protocol (KServe V2) REST routes: health, metadata and infer, with the binary
tensor data extension. Infer parses into the same rows as ``/invocations`` and goes through the
same DataPlane, so the two share cache entries. Errors on ``/v2`` are ``{"error": "..."}``
(``service.api.errors``)."""

from __future__ import annotations

from importlib.metadata import version as package_version
from typing import Any

import numpy as np
import orjson
from fastapi import APIRouter, Request, Response

from service.api.deps import DataPlaneDep
from service.api.oip_codec import (
    HEADER_LENGTH,
    InferRequest,
    OutputTensor,
    datatype_of,
    output_tensor,
    parse_infer,
    split_body,
)
from service.api.protocol import decode_json, read_body, route_key
from service.api.responses import json_response, prediction_headers
from service.cache.control import CacheControl
from service.cache.outcome import CacheOutcome
from service.dataplane import DataPlane, Prediction
from service.errors import InvalidInput, Overloaded
from service.models.loaded import LoadedModel

router = APIRouter(prefix="/v2", tags=["open inference protocol (v2)"])

EXTENSIONS = ["binary_tensor_data"]
_SERVER = {"name": "memoserve", "version": package_version("memoserve"), "extensions": EXTENSIONS}

# As in service.api.inference, infer reads the body and the DataPlane itself (FastAPI's
# parameter validation costs a hit about a quarter of its CPU); only the docs go through FastAPI.
_INFER_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {"type": "object"},
                "example": {
                    "inputs": [
                        {"name": "input-0", "shape": [1, 2], "datatype": "FP64", "data": [1, 2]}
                    ],
                    "outputs": [{"name": "predict"}],
                },
            },
            "application/octet-stream": {
                "schema": {"type": "string", "format": "binary"},
                "description": "Binary tensor data extension: a JSON header of "
                "Inference-Header-Content-Length bytes, then the inputs' raw bytes.",
            },
        },
    },
}


@router.get("/health/live")
async def live() -> Response:
    """200 while the process answers."""
    return json_response({"live": True})


@router.get("/health/ready")
async def ready(dataplane: DataPlaneDep) -> Response:
    """200 once a model is loaded and no model call is stuck; 503 otherwise."""
    ok = dataplane.ready().ok
    return json_response({"ready": ok}, 200 if ok else 503)


@router.get("")
async def server_metadata() -> Response:
    """Server name, version and the protocol extensions it supports."""
    return json_response(_SERVER)


@router.get("/models/{name}")
async def model_metadata(name: str, dataplane: DataPlaneDep) -> Response:
    """Name, served version, platform, and the input and output tensors."""
    return json_response(_metadata(dataplane.model_for(name)))


@router.get("/models/{name}/versions/{version}")
async def model_version_metadata(name: str, version: str, dataplane: DataPlaneDep) -> Response:
    """Metadata of one version: 404 unless an arm serves it."""
    return json_response(_metadata(dataplane.model_for(name, version)))


@router.get("/models/{name}/ready")
async def model_ready(name: str, dataplane: DataPlaneDep) -> Response:
    """200 when the model is loaded and ready, 503 while not, 404 for another name."""
    return _model_ready(dataplane, name, None)


@router.get("/models/{name}/versions/{version}/ready")
async def model_version_ready(name: str, version: str, dataplane: DataPlaneDep) -> Response:
    """As ``/v2/models/{name}/ready``, for one version (404 unless it is the one served)."""
    return _model_ready(dataplane, name, version)


@router.post("/models/{name}/infer", openapi_extra=_INFER_DOC)
async def infer(name: str, request: Request) -> Response:
    """Inference with the served version."""
    return await _infer(request, name, None)


@router.post("/models/{name}/versions/{version}/infer", openapi_extra=_INFER_DOC)
async def infer_version(name: str, version: str, request: Request) -> Response:
    """Inference with one version (pinned, whatever the canary split): 404 unless an arm
    serves it."""
    return await _infer(request, name, version)


def _model_ready(dataplane: DataPlane, name: str, version: str | None) -> Response:
    model = dataplane.model_for(name, version)
    ok = dataplane.ready().ok
    return json_response({"name": model.name, "ready": ok}, 200 if ok else 503)


def _metadata(model: LoadedModel) -> dict[str, Any]:
    return {
        "name": model.name,
        "versions": [model.version],
        "platform": _platform(model),
        "inputs": _inputs(model),
        "outputs": [_output_meta(model, o) for o in model.outputs],
    }


def _platform(model: LoadedModel) -> str:
    estimator = getattr(model.predictor, "estimator", None)
    return "mlflow_sklearn" if estimator is not None else "mlflow"


def _inputs(model: LoadedModel) -> list[dict[str, Any]]:
    columns = model.schema.columns
    if model.schema.names is not None:
        return [{"name": c.name, "datatype": datatype_of(c.dtype), "shape": [-1]} for c in columns]
    dtypes = {datatype_of(c.dtype) for c in columns} or {"FP64"}
    datatype = dtypes.pop() if len(dtypes) == 1 else "FP64"
    return [{"name": "input-0", "datatype": datatype, "shape": [-1, model.schema.width or -1]}]


def _output_meta(model: LoadedModel, output: str) -> dict[str, Any]:
    classes = getattr(getattr(model.predictor, "estimator", None), "classes_", None)
    if output == "predict_proba":
        width = len(classes) if classes is not None else -1
        return {"name": output, "datatype": "FP64", "shape": [-1, width]}
    datatype = "FP64"
    if isinstance(classes, np.ndarray):
        kind = classes.dtype.kind
        datatype = {"b": "BOOL", "i": "INT64", "u": "INT64", "f": "FP64"}.get(kind, "BYTES")
    return {"name": output, "datatype": datatype, "shape": [-1]}


async def _infer(request: Request, name: str, version: str | None) -> Response:
    dataplane: DataPlane = request.app.state.dataplane
    model = dataplane.model_for(name, version)  # 404 before reading the body
    limit = dataplane.max_body_bytes
    header, binary = split_body(await read_body(request, limit), request.headers.get(HEADER_LENGTH))
    parsed = parse_infer(decode_json(header, limit), binary, model.schema)
    outputs = parsed.outputs
    wanted = [o.name for o in outputs] if outputs else [dataplane.default_output]
    for output in wanted:
        if output not in model.outputs:
            raise InvalidInput(
                f"output {output!r} is not offered by this model; it offers {list(model.outputs)}",
                {"outputs": list(model.outputs)},
            )
    cache_control = CacheControl.parse(request.headers.get("cache-control"))
    key = route_key(request.headers)
    predictions = await _predict_all(dataplane, parsed, name, version, wanted, cache_control, key)
    binary_of = {o.name: o.binary for o in outputs} if outputs else {}
    tensors = [
        output_tensor(o, p.values, binary_of.get(o, parsed.binary_default))
        for o, p in zip(wanted, predictions, strict=True)
    ]
    first = predictions[0]
    return _answer(parsed, first.model, tensors, _outcome(predictions), first.arm)


async def _predict_all(
    dataplane: DataPlane,
    parsed: InferRequest,
    name: str,
    version: str | None,
    outputs: list[str],
    cache_control: CacheControl,
    key: bytes | None,
) -> list[Prediction]:
    """One prediction per output kind, all by one version (retried if a swap fell between;
    the routing key gives every output the same arm)."""
    for _ in range(3):
        predictions = [
            await dataplane.predict(
                parsed.rows,
                model_name=name,
                version=version,
                output=output,
                cache_control=cache_control,
                route_key=key,
            )
            for output in outputs
        ]
        if len({p.model.version for p in predictions}) == 1:
            return predictions
    raise Overloaded("the model version kept changing during the request; retry")


def _outcome(predictions: list[Prediction]) -> CacheOutcome:
    outcomes = {p.outcome for p in predictions}
    if len(outcomes) == 1:
        return outcomes.pop()
    return CacheOutcome.BYPASS if CacheOutcome.BYPASS in outcomes else CacheOutcome.PARTIAL


def _answer(
    parsed: InferRequest,
    model: LoadedModel,
    tensors: list[OutputTensor],
    outcome: CacheOutcome,
    arm: str,
) -> Response:
    body: dict[str, Any] = {"model_name": model.name, "model_version": model.version}
    if parsed.id is not None:
        body["id"] = parsed.id
    body["outputs"] = [t.meta for t in tensors]
    header = orjson.dumps(body)
    headers = prediction_headers(outcome, model.version, arm)
    chunks = [t.binary for t in tensors if t.binary is not None]
    if not chunks:
        return Response(header, media_type="application/json", headers=headers)
    headers["Inference-Header-Content-Length"] = str(len(header))
    return Response(
        b"".join([header, *chunks]), media_type="application/octet-stream", headers=headers
    )
