"""Prediction routes: MLflow scoring (`/invocations`) and KServe V1."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request, Response

from service.api.deps import DataPlaneDep
from service.api.protocol import (
    ROUTE_KEY,
    decode_json,
    parse_kserve_v1,
    parse_mlflow,
    read_body,
    route_key,
)
from service.api.responses import prediction_headers
from service.cache.control import CacheControl
from service.dataplane import DataPlane
from service.rows.canonical import RawRows

router = APIRouter(tags=["inference"])
Parser = Callable[[Any], RawRows]

# The prediction routes are a cache hit's hot path: they read `?output=`, the body and the
# DataPlane themselves, because FastAPI's parameter validation and dependency solving cost about
# a quarter of a hit's CPU here (measured with py-spy and paired wrk runs). Only the
# documentation of the parameter goes through FastAPI.
_BODY_DOC: dict[str, Any] = {
    "parameters": [
        {
            "name": "output",
            "in": "query",
            "required": False,
            "schema": {"type": "string", "example": "predict_proba"},
            "description": "Output kind (default: the server's MEMOSERVE_MODEL_OUTPUT).",
        },
        {
            "name": "version",
            "in": "query",
            "required": False,
            "schema": {"type": "string", "example": "2"},
            "description": "Answer with this version (one an arm serves), not the routed arm's.",
        },
        {
            "name": ROUTE_KEY,
            "in": "header",
            "required": False,
            "schema": {"type": "string"},
            "description": "Routing key of the canary split (default: the first row).",
        },
    ],
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {"type": "object"},
                "example": {"dataframe_split": {"columns": ["x1", "x2"], "data": [[1.0, 2.0]]}},
            }
        },
    },
}


async def _predict(request: Request, parse: Parser, name: str | None = None) -> Response:
    """Read and parse the body, predict, answer with the cache outcome, version and arm."""
    dataplane: DataPlane = request.app.state.dataplane
    version = request.query_params.get("version")
    if name is not None or version is not None:
        dataplane.model_for(name, version)  # 404 before reading the body
    limit = dataplane.max_body_bytes
    raw = parse(decode_json(await read_body(request, limit), limit))
    prediction = await dataplane.predict(
        raw,
        model_name=name,
        version=version,
        output=request.query_params.get("output"),
        cache_control=CacheControl.parse(request.headers.get("cache-control")),
        route_key=route_key(request.headers),
    )
    headers = prediction_headers(prediction.outcome, prediction.model.version, prediction.arm)
    return Response(prediction.body, media_type="application/json", headers=headers)


@router.post("/invocations", openapi_extra=_BODY_DOC)
async def invocations(request: Request) -> Response:
    """MLflow scoring protocol, as `mlflow models serve` answers it."""
    return await _predict(request, parse_mlflow)


@router.post("/v1/models/{name}:predict", openapi_extra=_BODY_DOC)
async def kserve_predict(name: str, request: Request) -> Response:
    """KServe V1 prediction."""
    return await _predict(request, parse_kserve_v1, name)


@router.get("/v1/models/{name}")
async def kserve_model(name: str, dataplane: DataPlaneDep) -> dict[str, Any]:
    """KServe V1 model metadata, plus the serving version and its input schema."""
    model = dataplane.model_for(name)
    return {
        "name": model.name,
        "ready": True,
        "version": model.version,
        "alias": model.alias,
        "uri": model.uri,
        "outputs": list(model.outputs),
        "inputs": [{"name": c.name, "type": c.dtype} for c in model.schema.columns],
        "loaded_at": model.loaded_at,
    }
