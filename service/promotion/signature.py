"""Verification of MLflow webhook deliveries (``X-MLflow-Signature``)."""

from __future__ import annotations

import base64
import hashlib
import hmac

from service.errors import Unauthorized

SIGNATURE_VERSION = "v1"


def sign(secret: str, delivery_id: str, timestamp: str, body: bytes) -> str:
    """MLflow's signature: ``v1,`` + base64 HMAC-SHA256 of ``{delivery_id}.{timestamp}.{body}``."""
    content = delivery_id.encode() + b"." + timestamp.encode() + b"." + body
    digest = hmac.new(secret.encode(), content, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode()}"


def verify(
    secret: str,
    *,
    delivery_id: str | None,
    timestamp: str | None,
    signature: str | None,
    body: bytes,
    now: float,
    tolerance_seconds: int,
) -> None:
    """Raise Unauthorized unless the delivery is signed with ``secret`` and recent."""
    if not (delivery_id and timestamp and signature):
        raise Unauthorized("missing X-MLflow-Signature, X-MLflow-Timestamp or X-MLflow-Delivery-Id")
    if not timestamp.isdigit():
        raise Unauthorized("X-MLflow-Timestamp is not a Unix timestamp")
    if abs(now - int(timestamp)) > tolerance_seconds:
        raise Unauthorized(
            "stale delivery: timestamp outside the accepted window",
            {"tolerance_seconds": tolerance_seconds},
        )
    expected = sign(secret, delivery_id, timestamp, body)
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        raise Unauthorized("signature does not match")
