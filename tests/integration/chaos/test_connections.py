"""Connections that hold a worker without asking anything: idle or trickling ones are
answered 408 and closed at the header deadline, and past ``limit_concurrency`` a worker
answers 503 at once rather than queueing."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.integration.chaos.conftest import Report
from tests.integration.conftest import ReplicaFactory
from tests.support.traffic import Tally, ask

pytestmark = [pytest.mark.integration, pytest.mark.chaos]


def connect(url: str) -> socket.socket:
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=10)
    return sock


def read_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def test_idle_and_trickling_connections_are_closed_at_the_header_deadline(
    replicas: ReplicaFactory, iris_path: Path, report: Report
) -> None:
    replica = replicas(
        MEMOSERVE_MODEL_URI=str(iris_path),
        MEMOSERVE_WORKERS="1",
        MEMOSERVE_HEADER_TIMEOUT_SECONDS="1",
    )
    idle = connect(replica.url)  # connects, says nothing
    trickle = connect(replica.url)
    trickle.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\n")
    start = time.monotonic()
    for _ in range(3):  # a byte now and then, never the blank line
        trickle.sendall(b"X-Slow: 1\r\n")
        time.sleep(0.2)
    tally = Tally()
    with httpx.Client(base_url=replica.url, timeout=5) as c:
        tally.add(ask(c))  # a real client is served meanwhile
    for sock in (idle, trickle):
        answer = read_all(sock)  # the server closes it
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:80]
        assert b'"code":"request_timeout"' in answer
        sock.close()
    assert time.monotonic() - start < 5  # closed at the deadline, not at some far later one
    report.record(
        "Idle and slowloris connections (header deadline 1 s)",
        requests=tally.requests + 2,
        non_200=2,
    )
    assert [a.status for a in tally.answers] == [200]


def test_past_the_concurrency_limit_a_worker_answers_503_at_once(
    replicas: ReplicaFactory, iris_path: Path, report: Report
) -> None:
    replica = replicas(
        MEMOSERVE_MODEL_URI=str(iris_path),
        MEMOSERVE_WORKERS="1",
        MEMOSERVE_LIMIT_CONCURRENCY="4",
    )
    # uvicorn counts the asking connection too: three held ones and a fourth reach the limit.
    held = [connect(replica.url) for _ in range(3)]
    try:
        for sock in held:  # each one answered once, so the worker holds all three
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
        with httpx.Client(base_url=replica.url, timeout=5) as c:
            refused = c.post("/invocations", json={"instances": [[5.1, 3.5, 1.4, 0.2]]})
    finally:
        for sock in held:
            sock.close()
    assert refused.status_code == 503
    with httpx.Client(base_url=replica.url, timeout=5) as c:
        assert ask(c).status == 200  # and serves again once they are gone
    report.record("Connections past limit_concurrency (4)", requests=2, non_200=1)
