"""Webhook deliveries signed as MLflow signs them."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import orjson

from service.promotion.signature import sign


def deliver(
    url: str,
    payload: dict[str, Any],
    secret: str,
    ts: str | None = None,
    *,
    delivery: str | None = None,
) -> httpx.Response:
    """POST ``payload`` to the replica at ``url``'s MLflow webhook, signed with ``secret``
    (a new delivery id unless ``delivery`` names one: a replay)."""
    content = orjson.dumps(payload)
    delivery = delivery or uuid.uuid4().hex
    ts = ts or str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "X-MLflow-Delivery-Id": delivery,
        "X-MLflow-Timestamp": ts,
        "X-MLflow-Signature": sign(secret, delivery, ts, content),
    }
    return httpx.post(f"{url}/v1/webhooks/mlflow", content=content, headers=headers)


def alias_moved(name: str, version: str, alias: str = "champion") -> dict[str, Any]:
    """The body of a ``model_version_alias.created`` delivery."""
    return {
        "entity": "model_version_alias",
        "action": "created",
        "data": {"name": name, "alias": alias, "version": version},
    }
