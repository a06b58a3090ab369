"""The small async interface every prediction cache implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence


class PredictionCache(ABC):
    """Raw bytes by key; ``CacheUnavailable`` means "treat as a miss", never a failed request."""

    #: Label of this layer in metrics and spans (``memory``, ``l1``, ``redis``).
    layer: str = "cache"

    #: True when writes may take a network round trip, so they run in the background; an
    #: in-process cache is written before the answer goes out.
    write_behind: bool = True

    @abstractmethod
    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """Values for ``keys`` in order, None where absent."""

    @abstractmethod
    async def set_many(self, items: Sequence[tuple[str, bytes]], ttl_seconds: int) -> None:
        """Store every item with an expiry."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""
