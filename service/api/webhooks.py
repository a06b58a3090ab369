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
    """``model_version_alias.created``: verify the HMAC, then re-read the alias everywhere. A
    replayed delivery (an id already handled) gets 200 ``duplicate`` and triggers nothing."""
    body = await read_body(request, MAX_WEBHOOK_BYTES)
    headers = request.headers
    delivery_id = headers.get("x-mlflow-delivery-id")
    timestamp = headers.get("x-mlflow-timestamp")
    now = time.time()
    verify(
        settings.webhook_secret.get_secret_value(),
        delivery_id=delivery_id,
        timestamp=timestamp,
        signature=headers.get("x-mlflow-signature"),
        body=body,
        now=now,
        tolerance_seconds=settings.webhook_tolerance_seconds,
    )
    assert delivery_id is not None and timestamp is not None  # verify refuses them missing
    payload = decode_json(body, MAX_WEBHOOK_BYTES)
    if not isinstance(payload, dict):
        raise InvalidInput("webhook body must be a JSON object")
    outcome = await promotion.on_delivery(delivery_id, int(timestamp), now, payload)
    return json_response({"status": outcome.value}, outcome.status_code)
