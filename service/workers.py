"""The gunicorn worker class: uvicorn with uvloop and httptools, without its access log, with a
bound on concurrent requests and on how long a request's headers may take to arrive."""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn_worker import UvicornWorker

from service.settings import Settings

_TIMEOUT = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
    b"content-length: 104\r\n\r\n"
    b'{"error":{"code":"request_timeout","message":"the request headers did not arrive in time",'
    b'"details":{}}}'
)


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """httptools, plus a deadline for a request's headers: a connection that sends nothing, or
    trickles its headers (slowloris), is answered 408 and closed instead of holding a slot."""

    header_timeout: float = 10.0
    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._header_timer is None:
            self._arm()  # the next request on a kept-alive connection

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._header_timer = self.loop.call_later(self.header_timeout, self._headers_late)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_late(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.transport.write(_TIMEOUT)
            self.transport.close()


class MemoserveWorker(UvicornWorker):  # type: ignore[misc]
    """uvicorn's default access log costs ~28% of hit throughput; ours is cheaper and JSON."""

    #: The event loop and HTTP parser; ``loadtest.workers`` swaps them to measure what they earn.
    loop: str = "uvloop"
    http: Any = GuardedHttpToolsProtocol

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        settings = Settings()
        GuardedHttpToolsProtocol.header_timeout = settings.header_timeout_seconds
        self.CONFIG_KWARGS: dict[str, Any] = {
            "loop": self.loop,
            "http": self.http,
            "access_log": False,
            "lifespan": "on",
            # Past this many connections or requests in progress, uvicorn answers 503 at once.
            "limit_concurrency": settings.limit_concurrency,
            # uvicorn's drain waits for every open connection for ever; the master bounds it
            # with SIGKILL, but a worker whose master died (SIGTERM from PR_SET_PDEATHSIG)
            # must bound it itself.
            "timeout_graceful_shutdown": settings.graceful_timeout,
        }
        super().__init__(*args, **kwargs)
