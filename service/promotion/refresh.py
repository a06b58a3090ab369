"""Coalesced refreshes: a burst of events or webhooks costs a worker one or two alias reads."""

from __future__ import annotations

import asyncio

from service.background import BackgroundTasks
from service.models.manager import ModelManager
from service.observability import metrics


class CoalescedRefresh:
    """At most one refresh waits per worker. A request while one waits joins it (it has not
    read the alias yet, so it will see whatever the request is about); a request once it has
    begun queues exactly one more. Every refresh re-reads the alias: a request says "look
    now", never which version to serve."""

    def __init__(self, manager: ModelManager) -> None:
        self.manager = manager
        self._waiting: asyncio.Task[None] | None = None
        self._one_at_a_time = asyncio.Lock()
        self._tasks = BackgroundTasks("refresh")

    @property
    def busy(self) -> bool:
        """Whether a refresh runs or waits."""
        return len(self._tasks) > 0

    def request(self, reason: str) -> bool:
        """Ask for a refresh; False when it joined the one already waiting."""
        if self._waiting is not None:
            metrics.REFRESHES_COALESCED.inc()
            return False
        self._waiting = self._tasks.spawn(self._refresh(reason))
        return True

    async def cancel(self) -> None:
        """Cancel the running and the waiting refresh."""
        await self._tasks.cancel()
        self._waiting = None

    async def _refresh(self, reason: str) -> None:
        async with self._one_at_a_time:
            self._waiting = None  # from here on, a new request needs a read of its own
            await self.manager.refresh(reason)
