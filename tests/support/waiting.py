"""Waiting on an observable from inside the event loop (``wait_until`` of the local stack
blocks the loop it would wait for)."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable


async def eventually(
    check: Callable[[], bool | Awaitable[bool]], timeout: float, what: str, interval: float = 0.005
) -> None:
    """Poll ``check`` (a function or a coroutine function) until true; TimeoutError naming
    ``what`` otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(interval)
