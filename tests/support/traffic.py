"""Client traffic against replicas, tallied the way the failure promises are stated."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

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

    def stale(self, order: Callable[[str], Any] = int) -> list[Answer]:
        """Answers of an older version after a newer one, from the same replica, in the order
        they were sent (``order`` ranks versions; promotion order, not numbers, when given)."""
        newest: dict[str, Any] = {}
        stale: list[Answer] = []
        for a in sorted((a for a in self.answers if a.status == 200), key=lambda a: a.sent):
            rank = order(a.version)
            if a.replica in newest and rank < newest[a.replica]:
                stale.append(a)
            newest[a.replica] = max(rank, newest.get(a.replica, rank))
        return stale


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
        limits = None if self.keepalive else httpx.Limits(max_keepalive_connections=0)
        with httpx.Client(
            base_url=self.url, timeout=self.timeout, limits=limits or httpx.Limits()
        ) as client:
            for n in range(self.limit):
                if self._stop.is_set():
                    return
                rows = self.rows(n) if callable(self.rows) else self.rows
                answer = ask(client, rows, replica=self.url)
                with self._lock:
                    self.tally.add(answer)
                self._stop.wait(self.interval)
