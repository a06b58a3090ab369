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
    """Ready once a model is loaded. Redis is deliberately not a condition: the cache fails open."""
    model = dataplane.ready()
    if model is None:
        return json_response({"status": "loading", "model": dataplane.name}, 503)
    return json_response({"status": "ready", "model": model.name, "version": model.version})


@router.get("/metrics")
async def prometheus() -> Response:
    """Prometheus exposition, summed over gunicorn workers."""
    body, content_type = metrics.render()
    return Response(body, media_type=content_type)
