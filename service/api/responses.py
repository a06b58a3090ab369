"""JSON responses encoded with orjson."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import Response

from service.cache.outcome import CacheOutcome


def json_response(content: Any, status_code: int = 200) -> Response:
    """A JSON response without FastAPI's model serialization round trip."""
    return Response(orjson.dumps(content), status_code=status_code, media_type="application/json")


def prediction_headers(outcome: CacheOutcome, version: str, arm: str) -> dict[str, str]:
    """``X-Cache``, ``X-Model-Version`` and ``X-Model-Arm`` of a prediction."""
    return {"X-Cache": outcome.header, "X-Model-Version": version, "X-Model-Arm": arm}
