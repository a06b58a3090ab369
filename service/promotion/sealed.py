"""Signed pub/sub events: whoever can PUBLISH on Redis must not make workers reload or fence.

An event travels as ``{"v": 1, "ts": <unix seconds>, "event": {...}, "sig": "<hex>"}``; ``sig``
is HMAC-SHA256 over ``{ts}.{event as sorted-key JSON}`` with a key derived from the webhook
secret (a leaked event key does not sign webhooks, nor the other way round)."""

from __future__ import annotations

import hashlib
import hmac
from enum import StrEnum
from typing import Any

import orjson

EVENTS_KEY_LABEL = b"memoserve-events"


class Rejected(StrEnum):
    """Why an event was ignored; the ``reason`` label of ``memoserve_events_rejected_total``."""

    MALFORMED = "malformed"
    UNSIGNED = "unsigned"
    BAD_SIGNATURE = "bad_signature"
    STALE = "stale"


class EventRejected(Exception):
    """An event that must not be acted on."""

    def __init__(self, reason: Rejected) -> None:
        super().__init__(reason.value)
        self.reason = reason


def events_key(webhook_secret: str) -> bytes:
    """The events' HMAC key: HMAC(webhook secret, "memoserve-events")."""
    return hmac.new(webhook_secret.encode(), EVENTS_KEY_LABEL, hashlib.sha256).digest()


def _digest(key: bytes, ts: int, event: dict[str, Any]) -> str:
    content = b"%d." % ts + orjson.dumps(event, option=orjson.OPT_SORT_KEYS)
    return hmac.new(key, content, hashlib.sha256).hexdigest()


def seal(key: bytes, event: dict[str, Any], now: float) -> bytes:
    """The wire form of ``event``, signed at ``now``."""
    ts = int(now)
    return orjson.dumps({"v": 1, "ts": ts, "event": event, "sig": _digest(key, ts, event)})


def unseal(key: bytes, data: bytes, *, now: float, tolerance_seconds: int) -> dict[str, Any]:
    """The event in ``data``; raise EventRejected unless it is signed with ``key`` and recent."""
    try:
        message = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise EventRejected(Rejected.MALFORMED) from None
    if not isinstance(message, dict):
        raise EventRejected(Rejected.MALFORMED)
    event, ts, sig = message.get("event"), message.get("ts"), message.get("sig")
    if not isinstance(sig, str) or not isinstance(ts, int) or not isinstance(event, dict):
        raise EventRejected(Rejected.UNSIGNED)
    if not hmac.compare_digest(_digest(key, ts, event).encode(), sig.encode()):
        raise EventRejected(Rejected.BAD_SIGNATURE)
    if abs(now - ts) > tolerance_seconds:
        raise EventRejected(Rejected.STALE)
    return event
