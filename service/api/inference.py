"""Prediction routes: MLflow scoring (`/invocations`) and KServe V1."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from service.api.deps import DataPlaneDep
from service.api.protocol import decode_json, parse_kserve_v1, parse_mlflow
from service.dataplane import CacheControl, Prediction
from service.errors import PayloadTooLarge

router = APIRouter(tags=["inference"])

_BODY_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {"type": "object"},
                "example": {"dataframe_split": {"columns": ["x1", "x2"], "data": [[1.0, 2.0]]}},
            }
        },
    }
}


async def _body(request: Request, max_bytes: int) -> bytes:
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > max_bytes:
        raise PayloadTooLarge(
            f"body of {length} bytes; at most {max_bytes}", {"max_bytes": max_bytes}
        )
    return await request.body()


def _answer(prediction: Prediction) -> Response:
    return Response(
        prediction.body,
        media_type="application/json",
        headers={"X-Cache": prediction.cache, "X-Model-Version": prediction.model.version},
    )


@router.post("/invocations", openapi_extra=_BODY_DOC)
async def invocations(
    request: Request, dataplane: DataPlaneDep, output: str | None = None
) -> Response:
    """MLflow scoring protocol, as `mlflow models serve` answers it."""
    limit = dataplane.settings.max_body_bytes
    raw = parse_mlflow(decode_json(await _body(request, limit), limit))
    prediction = await dataplane.predict(
        raw,
        output=output,
        cache_control=CacheControl.parse(request.headers.get("cache-control")),
    )
    return _answer(prediction)


@router.post("/v1/models/{name}:predict", openapi_extra=_BODY_DOC)
async def kserve_predict(
    name: str, request: Request, dataplane: DataPlaneDep, output: str | None = None
) -> Response:
    """KServe V1 prediction."""
    dataplane.model_for(name)  # 404 before reading the body
    limit = dataplane.settings.max_body_bytes
    raw = parse_kserve_v1(decode_json(await _body(request, limit), limit))
    prediction = await dataplane.predict(
        raw,
        model_name=name,
        output=output,
        cache_control=CacheControl.parse(request.headers.get("cache-control")),
    )
    return _answer(prediction)


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
