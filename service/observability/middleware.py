"""Request metrics and the JSON access line, in one pure ASGI middleware.

Pure ASGI (not ``BaseHTTPMiddleware``, which costs a task and a stream per request). Labels use
the route template (``/v1/models/{name}:predict``), never the raw path, so that cardinality stays
bounded; metric children are cached per label set. The access line is one ``orjson.dumps`` and
one ``write`` (below ``PIPE_BUF``, so lines of several workers sharing a pipe do not interleave:
hence the cap on the logged path).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from time import perf_counter
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.observability import metrics
from service.observability.logs import trace_fields

UNMATCHED = "unmatched"
"""Route label of requests no route matched (404s of arbitrary paths)."""

QUIET_ROUTES = frozenset({"/healthz", "/readyz", "/metrics"})
"""Probes and scrapes: counted, never on the access log (Kubernetes events show failed probes)."""

_MAX_PATH = 512
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_X_CACHE = b"x-cache"
_X_MODEL_VERSION = b"x-model-version"


class _Response:
    """What the access line and the metrics need of the response, taken as it is sent."""

    __slots__ = ("_send", "status", "headers")

    def __init__(self, send: Send) -> None:
        self._send = send
        self.status = 500  # unless the app answers: an exception reaches the error middleware
        self.headers: list[tuple[bytes, bytes]] = []

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.headers = message.get("headers", self.headers)
        await self._send(message)


class RequestObservability:
    """Counts requests by route, method and status, times them by route, writes access lines."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        access_log: bool = True,
        write: Callable[[bytes], Any] | None = None,
    ) -> None:
        self.app = app
        self.access_log = access_log
        self._write = write or partial(os.write, 1)  # stdout, unbuffered
        self._pid = os.getpid()
        self._requests: dict[tuple[str, str, int], Any] = {}
        self._durations: dict[str, Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = perf_counter()
        response = _Response(send)
        try:
            await self.app(scope, receive, response.send)
        finally:
            elapsed = perf_counter() - start
            route = scope.get("route")
            template: str = getattr(route, "path", UNMATCHED)
            method: str = scope["method"]
            if method not in _METHODS:
                method = "OTHER"
            self._observe(template, method, response.status, elapsed)
            if self.access_log and template not in QUIET_ROUTES:
                self._log(scope, template, method, response, elapsed)

    def _observe(self, route: str, method: str, status: int, elapsed: float) -> None:
        key = (route, method, status)
        counter = self._requests.get(key)
        if counter is None:
            counter = self._requests[key] = metrics.REQUESTS.labels(route, method, str(status))
        counter.inc()
        histogram = self._durations.get(route)
        if histogram is None:
            histogram = self._durations[route] = metrics.REQUEST_DURATION.labels(route)
        histogram.observe(elapsed)

    def _log(
        self, scope: Scope, route: str, method: str, response: _Response, elapsed: float
    ) -> None:
        path: str = scope["path"][:_MAX_PATH]
        entry: dict[str, Any] = {
            "time": datetime.now(UTC),
            "level": "INFO",
            "logger": "memoserve.access",
            "message": f"{method} {path} {response.status}",
            "pid": self._pid,
            "method": method,
            "path": path,
            "route": route,
            "status": response.status,
            "duration_ms": round(elapsed * 1000, 3),
        }
        for name, value in response.headers:
            if name == _X_CACHE:
                entry["cache"] = value.decode("latin-1")
            elif name == _X_MODEL_VERSION:
                entry["model_version"] = value.decode("latin-1")
        client = scope.get("client")
        if client:
            entry["client"] = client[0]
        trace_fields(entry)
        try:
            self._write(orjson.dumps(entry, option=orjson.OPT_APPEND_NEWLINE))
        except OSError:  # a closed or full stdout must not fail the request
            pass
