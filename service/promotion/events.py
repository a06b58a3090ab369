"""Redis pub/sub on ``{ns}:events``: one message reaches every worker of every replica.

Events are signed (``service.promotion.sealed``): one that is unsigned, badly signed or stale
is dropped with a warning and ``memoserve_events_rejected_total{reason}``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio.client import PubSub

from service.cache.redis import REDIS_ERRORS, RedisCache
from service.errors import CacheUnavailable
from service.observability import metrics
from service.promotion.sealed import EventRejected, seal, unseal

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], Awaitable[None]]


RESUBSCRIBED = {"type": "resubscribed"}
"""Handed to the handler after a lost subscription is back: events sent meanwhile are lost,
so whoever listens should look for itself (re-read the alias)."""


class EventBus:
    """Publishes through the breaker; listens on its own connection, reconnecting with backoff.

    A subscription can die loudly (a reset, a Sentinel failover) or silently (a peer that
    holds every byte and never closes: nothing would ever arrive again). So the listener pings
    every ``keepalive_seconds`` and reconnects when nothing, not even a pong, came back for
    three of them."""

    def __init__(
        self,
        redis: RedisCache,
        channel: str,
        *,
        key: bytes,
        tolerance_seconds: int = 300,
        keepalive_seconds: float = 1.0,
    ) -> None:
        self.redis = redis
        self.channel = channel
        self.key = key
        self.tolerance = tolerance_seconds
        self.keepalive = keepalive_seconds
        self._warned: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None
        self.subscribed = asyncio.Event()

    async def publish(self, event: dict[str, Any]) -> bool:
        """Send ``event`` to every subscriber; False if Redis is unavailable."""
        payload = seal(self.key, event, time.time())
        try:
            await self.redis.run(lambda r: r.publish(self.channel, payload))
        except CacheUnavailable as exc:
            log.warning("could not publish %s on %s: %s", event.get("type"), self.channel, exc)
            return False
        return True

    def start(self, handler: Handler) -> None:
        """Listen in the background, handing every event to ``handler``."""
        self._task = asyncio.create_task(self._listen(handler), name="event-bus")

    async def stop(self) -> None:
        """Stop listening."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _listen(self, handler: Handler) -> None:
        delay, lost = 0.2, False
        while True:
            pubsub: PubSub | None = None
            try:
                pubsub = await self.redis.subscriber()
                await pubsub.subscribe(self.channel)
                await self._until_silent(pubsub, handler, resubscribed=lost)
            except REDIS_ERRORS as exc:
                lost = True
                if self.subscribed.is_set():  # it had worked: retry soon
                    delay = 0.2
                self.subscribed.clear()
                log.info("event subscription lost (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            finally:
                if pubsub is not None:
                    with contextlib.suppress(Exception):
                        await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _until_silent(self, pubsub: PubSub, handler: Handler, *, resubscribed: bool) -> None:
        """Hand messages over; raise TimeoutError once the connection stays silent."""
        loop = asyncio.get_running_loop()
        heard = pinged = loop.time()
        confirmed = False
        while True:
            message = await pubsub.get_message(timeout=self.keepalive)
            now = loop.time()
            if message is not None:
                heard = now
                if not confirmed:  # the subscription's confirmation: this connection works
                    confirmed = True
                    self.subscribed.set()
                    if resubscribed:
                        await self._handle(dict(RESUBSCRIBED), handler)
                if message.get("type") == "message":
                    await self._dispatch(message["data"], handler)
            if now - heard > 3 * self.keepalive:
                raise TimeoutError(f"no answer on {self.channel} for {now - heard:.1f}s")
            if now - pinged >= self.keepalive:
                await pubsub.ping()
                pinged = now

    async def _dispatch(self, data: bytes, handler: Handler) -> None:
        try:
            event = unseal(self.key, data, now=time.time(), tolerance_seconds=self.tolerance)
        except EventRejected as exc:
            self._reject(exc.reason.value)
            return
        await self._handle(event, handler)

    def _reject(self, reason: str) -> None:
        """Count it; warn at most once a second per reason (a flood must not flood the log)."""
        metrics.EVENTS_REJECTED.labels(reason).inc()
        now = time.monotonic()
        if now - self._warned.get(reason, -1.0) >= 1.0:
            self._warned[reason] = now
            log.warning(
                "ignoring an event on %s: %s (memoserve_events_rejected_total counts them)",
                self.channel,
                reason.replace("_", " "),
            )

    @staticmethod
    async def _handle(event: dict[str, Any], handler: Handler) -> None:
        try:
            await handler(event)
        except Exception:
            log.exception("event handler failed for %s", event.get("type"))
