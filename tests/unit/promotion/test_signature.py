"""Webhook signatures: MLflow's format, constant-time check, timestamp window."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from service.errors import Unauthorized
from service.promotion.signature import sign, verify

BODY = b'{"entity": "model_version_alias", "action": "created"}'


def test_sign_matches_mlflow_format() -> None:
    raw = hmac.new(b"s", b"d1.100." + BODY, hashlib.sha256).digest()
    assert sign("s", "d1", "100", BODY) == "v1," + base64.b64encode(raw).decode()


def check(**overrides: object) -> None:
    args: dict[str, object] = {
        "delivery_id": "d1",
        "timestamp": "1000",
        "signature": sign("s", "d1", "1000", BODY),
        "body": BODY,
        "now": 1010.0,
        "tolerance_seconds": 300,
    }
    args.update(overrides)
    verify("s", **args)  # type: ignore[arg-type]


def test_valid_delivery_passes() -> None:
    check()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"signature": sign("other", "d1", "1000", BODY)}, "does not match"),
        ({"body": BODY + b" "}, "does not match"),
        ({"delivery_id": "d2"}, "does not match"),
        ({"now": 1000.0 + 301}, "stale"),
        ({"now": 1000.0 - 301}, "stale"),
        ({"signature": None}, "missing"),
        ({"timestamp": "yesterday"}, "not a Unix timestamp"),
    ],
)
def test_bad_deliveries_are_refused(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(Unauthorized, match=message):
        check(**overrides)
