"""The arms a replica serves: ``champion`` (the main alias), ``canary`` (a second alias that
gets a sticky share of the traffic) and ``shadow`` (computed off the request path, never
answered). Each arm is a ModelManager of its own, so each alias loads, polls and swaps by
itself; this module picks the arm of a request and knows which versions the arms serve."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from enum import StrEnum
from hashlib import blake2b

from service.errors import ModelNotFound, NotReady
from service.models.loaded import LoadedModel
from service.models.manager import ModelManager, SwapHook

_BUCKETS = 10_000  # percent with two decimals


class Arm(StrEnum):
    """Which alias of the model a version serves for; the ``arm`` label of metrics and spans."""

    CHAMPION = "champion"
    CANARY = "canary"
    SHADOW = "shadow"


def route_bucket(route_key: bytes) -> int:
    """A stable bucket in ``[0, 10000)`` of a routing key: the same key, on any replica and
    after any restart, always lands in the same bucket (BLAKE2b, not Python's salted hash)."""
    digest = blake2b(route_key, digest_size=8, person=b"memoserve-route").digest()
    return int.from_bytes(digest, "big") % _BUCKETS


def canary_takes(route_key: bytes, percent: float) -> bool:
    """Whether a request with ``route_key`` goes to the canary at ``percent`` (0–100). Buckets
    under the threshold go to the canary, so raising the percent only moves keys onto it."""
    return route_bucket(route_key) < round(percent * _BUCKETS / 100)


class ServingArms:
    """The managers of one worker's arms and the canary's share of the traffic."""

    def __init__(
        self,
        champion: ModelManager,
        *,
        canary: ModelManager | None = None,
        shadow: ModelManager | None = None,
        canary_percent: float = 0.0,
    ) -> None:
        self.champion = champion
        self.managers: dict[Arm, ModelManager] = {Arm.CHAMPION: champion}
        if canary is not None:
            self.managers[Arm.CANARY] = canary
        if shadow is not None:
            self.managers[Arm.SHADOW] = shadow
        self.canary_percent = canary_percent

    @property
    def name(self) -> str:
        """The served model's name."""
        return self.champion.name

    def __iter__(self) -> Iterator[tuple[Arm, ModelManager]]:
        return iter(self.managers.items())

    def current(self, arm: Arm) -> LoadedModel | None:
        """The version ``arm`` serves now, None when the arm is off or not loaded yet."""
        manager = self.managers.get(arm)
        return manager.current if manager is not None else None

    def versions(self) -> dict[Arm, str]:
        """The version of every loaded arm."""
        return {arm: m.current.version for arm, m in self.managers.items() if m.current}

    def for_alias(self, alias: object) -> list[ModelManager]:
        """The managers whose source follows ``alias``."""
        return [m for m in self.managers.values() if m.source.alias == alias]

    def route(self, route_key: Callable[[], bytes]) -> Arm:
        """The arm of a request: the canary for its share of routing keys once it is loaded
        (until then, or at 0 %, the champion answers everything). ``route_key`` is only
        called when the canary is in play."""
        if self.canary_percent <= 0 or self.current(Arm.CANARY) is None:
            return Arm.CHAMPION
        return Arm.CANARY if canary_takes(route_key(), self.canary_percent) else Arm.CHAMPION

    def pinned(self, version: str) -> Arm:
        """The arm serving ``version`` (a request that names it); 404 when no arm does."""
        if self.champion.current is None:
            raise NotReady(f"model {self.name!r} is not loaded yet")
        versions = self.versions()
        for arm, served in versions.items():
            if served == version:
                return arm
        raise ModelNotFound(
            f"model {self.name!r} has no version {version!r} served here; "
            f"it serves {sorted(set(versions.values()))}",
            {"serving": {arm.value: v for arm, v in versions.items()}},
        )

    async def serving(self, arm: Arm) -> LoadedModel:
        """The version ``arm`` answers with, once caught up with its siblings (the replica
        fence of that arm); 503 before the arm's first load."""
        model = await self.managers[arm].serving()
        if model is None:
            raise NotReady(f"model {self.name!r} ({arm.value}) is not loaded yet")
        return model

    def start(self) -> None:
        """Start every arm's loading and polling."""
        for manager in self.managers.values():
            manager.start()

    async def stop(self) -> None:
        """Stop every arm's manager."""
        for manager in self.managers.values():
            await manager.stop()


class ServedVersions:
    """The version each arm of this worker serves, as its swaps report it: what the purge of
    any arm's old version must leave alone. Built before the managers (their hooks write it)."""

    def __init__(self) -> None:
        self._by_arm: dict[str, str] = {}

    def recorder(self, arm: Arm) -> SwapHook:
        """An ``after_swap`` hook that records the version ``arm`` serves now."""

        async def record(old: LoadedModel | None, new: LoadedModel) -> None:
            self._by_arm[arm.value] = new.version

        return record

    def by_arm(self) -> Mapping[str, str]:
        """Arm name → the version it serves."""
        return dict(self._by_arm)
