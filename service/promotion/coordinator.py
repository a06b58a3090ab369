"""How a worker learns that an alias moved: a verified webhook or a signed pub/sub event asks
for a refresh (the manager's poll is the third path); a sibling's announcement fences this
worker. Neither names the version to serve: every refresh re-reads the alias, and requests
that arrive together share one read (``CoalescedRefresh``)."""

from __future__ import annotations

import logging
from enum import StrEnum
from typing import Any

from service.models.arms import ServingArms
from service.models.manager import ModelManager
from service.observability import metrics
from service.promotion.deliveries import DeliveryLog
from service.promotion.events import EventBus
from service.promotion.refresh import CoalescedRefresh

log = logging.getLogger(__name__)

ALIAS_EVENT = ("model_version_alias", "created")


class WebhookOutcome(StrEnum):
    """What a verified delivery did; its value is the ``status`` of the answer."""

    ACCEPTED = "accepted"
    NOT_AN_ALIAS_EVENT = "ignored: not a model_version_alias.created event"
    OTHER_MODEL = "ignored: another model or alias"
    DUPLICATE = "ignored: duplicate delivery (this delivery id was handled already)"

    @property
    def status_code(self) -> int:
        """202 when a refresh was started, 200 when there was nothing to do."""
        return 202 if self is WebhookOutcome.ACCEPTED else 200


class PromotionCoordinator:
    """Webhook → pub/sub → every worker refreshes; announcements fence lagging workers. Each
    arm follows its own alias: an event or delivery about an alias refreshes that arm only."""

    def __init__(
        self, arms: ServingArms, bus: EventBus | None, deliveries: DeliveryLog | None = None
    ) -> None:
        self.arms = arms
        self.manager = arms.champion
        self.bus = bus
        self.deliveries = deliveries
        self._refreshes = {m: CoalescedRefresh(m) for _, m in arms}
        self.refreshes = self._refreshes[self.manager]
        """The champion's refreshes."""

    def _refresh(self, managers: list[ModelManager], reason: str) -> None:
        for manager in managers:
            self._refreshes[manager].request(reason)

    def start(self) -> None:
        """Subscribe to the event channel."""
        if self.bus is not None:
            self.bus.start(self.on_event)

    async def stop(self) -> None:
        """Unsubscribe and cancel pending refreshes."""
        if self.bus is not None:
            await self.bus.stop()
        for refreshes in self._refreshes.values():
            await refreshes.cancel()

    async def on_delivery(
        self, delivery_id: str, timestamp: int, now: float, payload: dict[str, Any]
    ) -> WebhookOutcome:
        """A verified MLflow delivery, once per delivery id (a replay is answered, not acted on)."""
        if self.deliveries is not None and not await self.deliveries.first_time(
            delivery_id, timestamp, now
        ):
            metrics.WEBHOOK_DUPLICATES.inc()
            log.info("ignoring a replayed webhook delivery %r", delivery_id[:64])
            return WebhookOutcome.DUPLICATE
        return await self.on_webhook(payload)

    async def on_webhook(self, payload: dict[str, Any]) -> WebhookOutcome:
        """A verified MLflow delivery: tell every worker, then refresh here. Each refresh re-reads
        the alias from MLflow; the payload only says which model to look at (its version is not
        passed on). A registry fault fails the refresh, logged; the poll catches up."""
        if (payload.get("entity"), payload.get("action")) != ALIAS_EVENT:
            return WebhookOutcome.NOT_AN_ALIAS_EVENT
        data = payload.get("data") or {}
        managers = self.arms.for_alias(data.get("alias"))
        if data.get("name") != self.manager.source.registry_name or not managers:
            return WebhookOutcome.OTHER_MODEL
        if self.bus is not None:
            event = {"type": "alias_changed", "model": data["name"], "alias": data["alias"]}
            await self.bus.publish(event)
        self._refresh(managers, "webhook")
        return WebhookOutcome.ACCEPTED

    async def on_event(self, event: dict[str, Any]) -> None:
        """An event from the channel: refresh on ``alias_changed`` or a sibling's ``loading``
        (and after the subscription was lost: events may have been missed), fence on
        ``serving``. A version in an event is a hint only: the fence makes this worker re-read
        the alias, and it serves what the registry names (the fence lifts if that is its own)."""
        if event.get("type") == "resubscribed":
            self._refresh([m for _, m in self.arms], "resubscribed")
            return
        name = self.manager.source.registry_name
        if name is None or event.get("model") != name:
            return
        # Without an alias (a pod from before arms) an event is about the champion.
        managers = self.arms.for_alias(event.get("alias", self.manager.source.alias))
        if event.get("type") in ("alias_changed", "loading"):
            self._refresh(managers, f"pubsub {event['type']}")
        elif event.get("type") == "serving" and isinstance(event.get("version"), str):
            for manager in managers:
                manager.served_elsewhere(event["version"])
