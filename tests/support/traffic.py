"""Client traffic against replicas, tallied the way the failure promises are stated."""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx
import orjson

from tests.support.payloads import IRIS_ROWS, dataframe_split


@dataclass
class Answer:
    """One request as its client saw it: a status (0: no answer, ``error`` says why), X-Cache
    and version, and when it was sent and answered (monotonic)."""

    status: int
    cache: str = ""
    version: str = ""
    replica: str = ""
    sent: float = 0.0
    body: bytes = b""
    error: str = ""
    done: float = 0.0

    @property
    def lost(self) -> bool:
        """Sent, but no answer came: a connection refused was never sent, so it is not lost."""
        return self.status == 0 and self.error != "ConnectError"


@dataclass
class Tally:
    """Answers of one scenario."""

    answers: list[Answer] = field(default_factory=list)

    def add(self, answer: Answer) -> None:
        self.answers.append(answer)

    @property
    def requests(self) -> int:
        return len(self.answers)

    @property
    def non_200(self) -> list[Answer]:
        return [a for a in self.answers if a.status != 200]

    @property
    def lost(self) -> list[Answer]:
        return [a for a in self.answers if a.lost]

    @property
    def server_errors(self) -> list[Answer]:
        return [a for a in self.answers if a.status >= 500 or a.status == 0]

    def caches(self) -> set[str]:
        return {a.cache for a in self.answers}


def ask(
    client: httpx.Client, rows: list[list[float]] | None = None, *, replica: str = ""
) -> Answer:
    """One prediction request; a transport error is status 0, never an exception."""
    sent = time.monotonic()
    try:
        r = client.post("/invocations", json=dataframe_split(rows or IRIS_ROWS[:1]))
    except httpx.HTTPError as exc:
        return Answer(0, replica=replica, sent=sent, error=type(exc).__name__)
    return Answer(
        r.status_code,
        r.headers.get("x-cache", ""),
        r.headers.get("x-model-version", ""),
        replica,
        sent,
        r.content,
        done=time.monotonic(),
    )


def ask_fresh(url: str, rows: list[list[float]] | None, *, timeout: float = 5.0) -> Answer:
    """``ask`` over a connection of its own, closed after the answer (``Connection: close``)."""
    parts = urlsplit(url)
    body = orjson.dumps(dataframe_split(rows or IRIS_ROWS[:1]))
    headers = {"Content-Type": "application/json", "Connection": "close"}
    sent = time.monotonic()
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=timeout)
    try:
        conn.request("POST", "/invocations", body=body, headers=headers)
        with conn.getresponse() as r:
            content = r.read()
    except ConnectionRefusedError:
        return Answer(0, replica=url, sent=sent, error="ConnectError")
    except (OSError, http.client.HTTPException) as exc:
        return Answer(0, replica=url, sent=sent, error=type(exc).__name__)
    finally:
        conn.close()
    return Answer(
        r.status,
        r.getheader("x-cache", ""),
        r.getheader("x-model-version", ""),
        url,
        sent,
        content,
        done=time.monotonic(),
    )


class Stream:
    """A client thread asking one replica in a loop until stopped (bounded by ``limit``)."""

    def __init__(
        self,
        url: str,
        tally: Tally,
        *,
        rows: list[list[float]] | Callable[[int], list[list[float]]] | None = None,
        interval: float = 0.01,
        limit: int = 5000,
        timeout: float = 5.0,
        keepalive: bool = True,
    ) -> None:
        self.url, self.tally, self.rows = url, tally, rows
        self.interval, self.limit, self.timeout = interval, limit, timeout
        self.keepalive = keepalive
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Stream:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        if not self.keepalive:  # a fresh connection for every request: any worker may answer
            for n in range(self.limit):
                if self._stop.is_set():
                    return
                answer = ask_fresh(self.url, self._rows(n), timeout=self.timeout)
                with self._lock:
                    self.tally.add(answer)
                self._stop.wait(self.interval)
            return
        with httpx.Client(base_url=self.url, timeout=self.timeout) as client:
            for n in range(self.limit):
                if self._stop.is_set():
                    return
                self._ask(client, n)
                self._stop.wait(self.interval)

    def _rows(self, n: int) -> list[list[float]] | None:
        return self.rows(n) if callable(self.rows) else self.rows

    def _ask(self, client: httpx.Client, n: int) -> None:
        answer = ask(client, self._rows(n), replica=self.url)
        with self._lock:
            self.tally.add(answer)
