"""Oversized bodies from clients that send no ``Expect: 100-continue`` (urllib, requests):
the 413 must arrive readable, not as a connection reset, over plain ``http.client``."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.integration.conftest import ReplicaFactory

pytestmark = pytest.mark.integration

ROW = b"[5.1, 3.5, 1.4, 0.2]"


def big_body(rows: int) -> bytes:
    return b'{"instances": [' + b", ".join([ROW] * rows) + b"]}"


def post(
    url: str, body: bytes | Iterator[bytes], *, chunked: bool
) -> tuple[int, dict[str, object]]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
    try:
        # As urllib sends it: the server closes after its answer, with the body unread unless
        # it drained it, and the kernel then resets the connection under the client.
        headers = {"Content-Type": "application/json", "Connection": "close"}
        conn.request("POST", "/invocations", body=body, headers=headers, encode_chunked=chunked)
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def test_an_oversized_body_is_answered_413_for_a_client_without_expect(
    replicas: ReplicaFactory, iris_path: Path
) -> None:
    replica = replicas(MEMOSERVE_MODEL_URI=str(iris_path), MEMOSERVE_WORKERS="1")
    body = big_body(440_000)  # about 8.8 MB, as the report that found this sent
    assert len(body) > 8_000_000
    for _ in range(3):
        status, answer = post(replica.url, body, chunked=False)
        assert status == 413
        assert answer["error"]["code"] == "payload_too_large"  # type: ignore[index]

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(body), 65536):
            yield body[start : start + 65536]

    for _ in range(3):
        status, answer = post(replica.url, chunks(), chunked=True)
        assert status == 413
        assert answer["error"]["code"] == "payload_too_large"  # type: ignore[index]
    status, answer = post(replica.url, big_body(1), chunked=False)  # and it still serves
    assert status == 200 and answer == {"predictions": [0]}
