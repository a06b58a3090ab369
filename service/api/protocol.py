"""Request protocols (MLflow scoring, KServe V1) parsed into rows; no pydantic on the hot path."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request

from service.errors import InvalidInput, PayloadTooLarge
from service.rows.canonical import RawRows

MLFLOW_FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The body, refused with 413 as soon as it is known to be too large: from its
    Content-Length, or, sent chunked, once more than ``max_bytes`` have arrived."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > max_bytes:
        raise PayloadTooLarge(
            f"body of {length} bytes; at most {max_bytes}", {"max_bytes": max_bytes}
        )
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise PayloadTooLarge(f"body of more than {max_bytes} bytes", {"max_bytes": max_bytes})
        chunks.append(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def decode_json(body: bytes, max_bytes: int) -> Any:
    """The parsed body; 413 when too large, 422 when empty or not JSON."""
    if len(body) > max_bytes:
        raise PayloadTooLarge(
            f"body of {len(body)} bytes; at most {max_bytes}", {"max_bytes": max_bytes}
        )
    if not body.strip():
        raise InvalidInput("the request body is empty; send a JSON object")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"the request body is not valid JSON: {exc}") from exc


def parse_mlflow(payload: Any) -> RawRows:
    """Rows of an MLflow scoring request (``mlflow models serve`` formats)."""
    if not isinstance(payload, dict):
        raise InvalidInput(
            "expected a JSON object with one of " + ", ".join(MLFLOW_FORMATS),
            {"accepted": list(MLFLOW_FORMATS)},
        )
    present = [k for k in MLFLOW_FORMATS if k in payload]
    if len(present) != 1:
        raise InvalidInput(
            "expected exactly one of "
            + ", ".join(MLFLOW_FORMATS)
            + (f", got {present}" if present else f", got keys {sorted(payload)[:10]}"),
            {"accepted": list(MLFLOW_FORMATS)},
        )
    if payload.get("params"):
        # Params could change the output without changing the key: refuse rather than mis-cache.
        raise InvalidInput("inference params are not supported by this server")
    fmt = present[0]
    value = payload[fmt]
    if fmt == "dataframe_split":
        if not isinstance(value, dict) or not isinstance(value.get("data"), list):
            raise InvalidInput('dataframe_split needs {"columns": [...], "data": [[...], ...]}')
        columns = value.get("columns")
        if columns is not None and not isinstance(columns, list):
            raise InvalidInput("dataframe_split.columns must be a list of names")
        return RawRows(value["data"], columns)
    if fmt == "dataframe_records":
        if not isinstance(value, list) or not all(isinstance(r, dict) for r in value):
            raise InvalidInput("dataframe_records must be a list of objects")
        return RawRows(value)
    return _tensor_rows(fmt, value)


def parse_kserve_v1(payload: Any) -> RawRows:
    """Rows of a KServe V1 ``:predict`` request (``instances`` or ``inputs``)."""
    if not isinstance(payload, dict) or not ("instances" in payload or "inputs" in payload):
        raise InvalidInput('expected {"instances": [...]} (KServe V1 protocol)')
    fmt = "instances" if "instances" in payload else "inputs"
    return _tensor_rows(fmt, payload[fmt])


def _tensor_rows(fmt: str, value: Any) -> RawRows:
    if isinstance(value, dict):
        # Columnar form: {"col": [v, v, ...], ...}
        columns = list(value)
        cols = list(value.values())
        if not cols or not all(isinstance(c, list) for c in cols):
            raise InvalidInput(f"{fmt} as an object must map column names to lists")
        if len({len(c) for c in cols}) != 1:
            raise InvalidInput(f"{fmt}: every column must have the same number of values")
        return RawRows([list(r) for r in zip(*cols, strict=True)], columns)
    if not isinstance(value, list):
        raise InvalidInput(f"{fmt} must be a list of rows")
    return RawRows(value)
