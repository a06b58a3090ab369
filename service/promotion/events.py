"""Redis pub/sub on ``{ns}:events``: one message reaches every worker of every replica."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from redis.exceptions import RedisError

from service.cache.redis import RedisCache
from service.errors import CacheUnavailable

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], Awaitable[None]]


class EventBus:
    """Publishes through the breaker; listens on its own connection, reconnecting with backoff
    (a Sentinel failover drops the subscription; messages sent meanwhile are lost, which is
    why the alias poll exists)."""

    def __init__(self, redis: RedisCache, channel: str) -> None:
        self.redis = redis
        self.channel = channel
        self._task: asyncio.Task[None] | None = None
        self.subscribed = asyncio.Event()

    async def publish(self, event: dict[str, Any]) -> bool:
        """Send ``event`` to every subscriber; False if Redis is unavailable."""
        payload = orjson.dumps(event)
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
        delay = 0.2
        while True:
            pubsub = self.redis.client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                self.subscribed.set()
                delay = 0.2
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is not None and message.get("type") == "message":
                        await self._dispatch(message["data"], handler)
            except (RedisError, OSError, TimeoutError) as exc:
                self.subscribed.clear()
                log.info("event subscription lost (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _dispatch(self, data: bytes, handler: Handler) -> None:
        try:
            event = orjson.loads(data)
        except orjson.JSONDecodeError:
            log.warning("ignoring a malformed event on %s", self.channel)
            return
        if isinstance(event, dict):
            try:
                await handler(event)
            except Exception:
                log.exception("event handler failed for %s", event.get("type"))
