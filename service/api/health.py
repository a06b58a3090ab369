"""Liveness, readiness and metrics."""

from __future__ import annotations

from fastapi import APIRouter, Response

from service.api.deps import DataPlaneDep
from service.api.responses import json_response
from service.observability import metrics

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> Response:
    """Live while the process answers."""
    return json_response({"status": "ok"})


@router.get("/readyz")
async def readyz(dataplane: DataPlaneDep) -> Response:
    """Ready once a model is loaded and no model call is stuck (``DataPlane.ready``)."""
    readiness = dataplane.ready()
    body: dict[str, str] = {"status": readiness.status, "model": dataplane.name}
    if readiness.model is not None:
        body["version"] = readiness.model.version
    if dataplane.manager.load_error:  # e.g. a version the trust policy refused
        body["load_error"] = dataplane.manager.load_error
    return json_response(body, 200 if readiness.ok else 503)


@router.get("/metrics")
async def prometheus() -> Response:
    """Prometheus exposition, summed over gunicorn workers."""
    body, content_type = metrics.render()
    return Response(body, media_type=content_type)
