"""The metrics port (``MEMOSERVE_METRICS_BIND``) answers ``/metrics`` and nothing else.

gunicorn listens on both addresses and every worker serves both, so the one app tells them
apart by the port a request arrived on: a NetworkPolicy can then admit Prometheus to this port
without admitting it to predictions.
"""

from __future__ import annotations

import json
from typing import Any

Scope = dict[str, Any]
Receive = Any
Send = Any
ASGIApp = Any

PATH = "/metrics"
_BODY = json.dumps({"detail": f"only {PATH} is served on the metrics port"}).encode()


def bind_port(bind: str) -> int:
    """The port of a ``host:port`` bind address (``[::]:9090`` included)."""
    return int(bind.rsplit(":", 1)[1])


class MetricsPortOnly:
    """Pure ASGI: a request on ``port`` for anything but ``/metrics`` gets a JSON 404."""

    def __init__(self, app: ASGIApp, port: int) -> None:
        self.app = app
        self.port = port

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        server = scope.get("server") or (None, None)
        if scope["type"] == "http" and server[1] == self.port and scope["path"] != PATH:
            headers = [
                (b"content-type", b"application/json"),
                (b"content-length", b"%d" % len(_BODY)),
            ]
            await send({"type": "http.response.start", "status": 404, "headers": headers})
            await send({"type": "http.response.body", "body": _BODY})
            return
        await self.app(scope, receive, send)
