"""How a worker learns that an alias moved: a verified webhook or a pub/sub event triggers a
refresh (the manager's poll is the third path); a sibling's announcement fences this worker."""

from __future__ import annotations

import asyncio
import logging
from enum import StrEnum
from typing import Any

from service.background import BackgroundTasks
from service.errors import RegistryUnavailable
from service.models.manager import ModelManager
from service.promotion.events import EventBus

log = logging.getLogger(__name__)

ALIAS_EVENT = ("model_version_alias", "created")


class WebhookOutcome(StrEnum):
    """What a verified delivery did; its value is the ``status`` of the answer."""

    ACCEPTED = "accepted"
    NOT_AN_ALIAS_EVENT = "ignored: not a model_version_alias.created event"
    OTHER_MODEL = "ignored: another model or alias"

    @property
    def status_code(self) -> int:
        """202 when a refresh was started, 200 when there was nothing to do."""
        return 202 if self is WebhookOutcome.ACCEPTED else 200


class PromotionCoordinator:
    """Webhook → pub/sub → every worker refreshes; announcements fence lagging workers."""

    def __init__(self, manager: ModelManager, bus: EventBus | None) -> None:
        self.manager = manager
        self.bus = bus
        self._refreshes = BackgroundTasks("refresh")

    def start(self) -> None:
        """Subscribe to the event channel."""
        if self.bus is not None:
            self.bus.start(self.on_event)

    async def stop(self) -> None:
        """Unsubscribe and cancel pending refreshes."""
        if self.bus is not None:
            await self.bus.stop()
        await self._refreshes.cancel()

    async def on_webhook(self, payload: dict[str, Any]) -> WebhookOutcome:
        """A verified MLflow delivery: tell every worker, then refresh here. The alias is re-read
        from MLflow by each refresh; the payload only says which model to look at."""
        if (payload.get("entity"), payload.get("action")) != ALIAS_EVENT:
            return WebhookOutcome.NOT_AN_ALIAS_EVENT
        data = payload.get("data") or {}
        source = self.manager.source
        if data.get("name") != source.registry_name or data.get("alias") != source.alias:
            return WebhookOutcome.OTHER_MODEL
        # The registry, not the payload, says which version the alias names now. Unreachable,
        # the delivery fails (5xx, so MLflow's log shows it) and the poll catches up later.
        try:
            version = await asyncio.to_thread(source.resolve)
        except Exception as exc:
            raise RegistryUnavailable(f"could not re-read the alias: {exc}") from exc
        if self.bus is not None:
            event = {"type": "alias_changed", "model": data["name"], "alias": data["alias"]}
            await self.bus.publish({**event, "version": version})
        self._refreshes.spawn(self.manager.refresh("webhook"))
        return WebhookOutcome.ACCEPTED

    async def on_event(self, event: dict[str, Any]) -> None:
        """An event from the channel: refresh on ``alias_changed`` or a sibling's ``loading``
        (and after the subscription was lost: events may have been missed), fence on
        ``serving``."""
        if event.get("type") == "resubscribed":
            self._refreshes.spawn(self.manager.refresh("resubscribed"))
            return
        name = self.manager.source.registry_name
        if name is None or event.get("model") != name:
            return
        if event.get("type") in ("alias_changed", "loading"):
            self._refreshes.spawn(self.manager.refresh(f"pubsub {event['type']}"))
        elif event.get("type") == "serving" and isinstance(event.get("version"), str):
            self.manager.served_elsewhere(event["version"])
