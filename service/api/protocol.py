"""Request protocols (MLflow scoring, KServe V1) parsed into rows; no pydantic on the hot path."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.datastructures import Headers
from starlette.requests import ClientDisconnect, Request

from service.errors import InvalidInput, PayloadTooLarge, RequestTimeout
from service.rows.canonical import RawRows

MLFLOW_FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")

ROUTE_KEY = "X-Memoserve-Route-Key"
"""A caller's routing key of the canary split (a user or session id): one key, one arm."""


def route_key(headers: Headers) -> bytes | None:
    """The request's routing key, None when it sends none (the first row decides then)."""
    value = headers.get(ROUTE_KEY)
    return value.encode() if value is not None else None


DRAIN_LIMIT_BYTES = 64 * 1024 * 1024
"""An oversized body up to this size is read and dropped before the 413 goes out: a client that
sends no ``Expect: 100-continue`` (urllib, requests) would otherwise get a connection reset
instead of the answer, as the kernel resets a socket closed with unread data."""

BODY_READ_SECONDS = 30.0
"""A body that has not arrived whole by then is refused (408): a trickling client must not
hold a worker's connection slot."""


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The body, refused with 413 as soon as it is known to be too large: from its
    Content-Length, or, sent chunked, once more than ``max_bytes`` have arrived."""
    try:
        async with asyncio.timeout(BODY_READ_SECONDS):
            return await _read(request, max_bytes)
    except TimeoutError:
        raise RequestTimeout(
            f"the body did not arrive within {BODY_READ_SECONDS:.0f}s",
            {"timeout_seconds": BODY_READ_SECONDS},
        ) from None


async def _read(request: Request, max_bytes: int) -> bytes:
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > max_bytes:
        if int(length) <= DRAIN_LIMIT_BYTES:
            await _discard(request.stream(), DRAIN_LIMIT_BYTES)
        raise PayloadTooLarge(
            f"body of {length} bytes; at most {max_bytes}", {"max_bytes": max_bytes}
        )
    chunks: list[bytes] = []
    size = 0
    stream = request.stream()
    async for chunk in stream:
        size += len(chunk)
        if size > max_bytes:
            await _discard(stream, DRAIN_LIMIT_BYTES - size)
            raise PayloadTooLarge(f"body of more than {max_bytes} bytes", {"max_bytes": max_bytes})
        chunks.append(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def _discard(stream: AsyncIterator[bytes], limit: int) -> None:
    """Read and drop the rest of a body, up to ``limit`` bytes (one stream: a request's can be
    iterated only once)."""
    dropped = 0
    with contextlib.suppress(ClientDisconnect):
        async for chunk in stream:
            dropped += len(chunk)
            if dropped > limit:
                return


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
