"""memoserve's worker with the stock asyncio loop or the pure-Python h11 parser, to measure what
uvloop and httptools earn (``GUNICORN_CMD_ARGS="-k loadtest.workers.AsyncioWorker"``)."""

from __future__ import annotations

from service.workers import MemoserveWorker


class AsyncioWorker(MemoserveWorker):
    """The standard library's event loop instead of uvloop."""

    loop = "asyncio"


class H11Worker(MemoserveWorker):
    """uvicorn's h11 parser instead of httptools."""

    http = "h11"
