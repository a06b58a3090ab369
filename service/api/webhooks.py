"""The MLflow webhook receiver: verified deliveries trigger a refresh on every replica."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request, Response

from service.api.deps import PromotionDep, SettingsDep
from service.api.protocol import decode_json, read_body
from service.api.responses import json_response
from service.errors import InvalidInput
from service.promotion.signature import verify

router = APIRouter(tags=["promotion"])
MAX_WEBHOOK_BYTES = 64 * 1024


@router.post("/v1/webhooks/mlflow", status_code=202)
async def mlflow_webhook(
    request: Request, promotion: PromotionDep, settings: SettingsDep
) -> Response:
    """``model_version_alias.created``: verify the HMAC, then re-read the alias everywhere."""
    body = await read_body(request, MAX_WEBHOOK_BYTES)
    headers = request.headers
    verify(
        settings.webhook_secret.get_secret_value(),
        delivery_id=headers.get("x-mlflow-delivery-id"),
        timestamp=headers.get("x-mlflow-timestamp"),
        signature=headers.get("x-mlflow-signature"),
        body=body,
        now=time.time(),
        tolerance_seconds=settings.webhook_tolerance_seconds,
    )
    payload = decode_json(body, MAX_WEBHOOK_BYTES)
    if not isinstance(payload, dict):
        raise InvalidInput("webhook body must be a JSON object")
    outcome = await promotion.on_webhook(payload)
    return json_response({"status": outcome.value}, outcome.status_code)
