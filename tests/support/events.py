"""Pub/sub events as a replica signs them, and as a forger without the key would send them."""

from __future__ import annotations

import time
from typing import Any

import orjson

from service.promotion.sealed import events_key, seal

KEY = events_key("unit-test-secret")
"""The events key of unit tests' buses."""


def signed(event: dict[str, Any], secret: str, *, at: float | None = None) -> bytes:
    """``event`` sealed with the key a replica derives from webhook ``secret``."""
    return seal(events_key(secret), event, time.time() if at is None else at)


def forged(event: dict[str, Any]) -> bytes:
    """``event`` as plain JSON, the way it travelled before events were signed."""
    return orjson.dumps(event)


def opened(data: bytes) -> Any:
    """The event inside a message heard on the channel (what a test compares)."""
    message = orjson.loads(data)
    return message.get("event", message) if isinstance(message, dict) else message
