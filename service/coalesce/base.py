"""The coalescing interface, and the implementation that does not coalesce."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence

Compute = Callable[[list[int]], Awaitable[list[bytes]]]
"""Values for the keys at the given positions, in that order."""


class Coalescer(ABC):
    """Computes each of ``keys`` once, however many callers ask for it at the same time."""

    @abstractmethod
    async def run(self, keys: list[str], compute: Compute) -> list[bytes]:
        """A value for every key, in order."""

    async def release(self, keys: Sequence[str]) -> None:  # noqa: B027 - optional hook
        """The values of ``keys`` are written: free what ``run`` held for them."""

    def abandon(self, keys: Sequence[str]) -> None:  # noqa: B027 - optional hook
        """No value of ``keys`` will be written (``no-store``): free them in the background."""


class Direct(Coalescer):
    """No coalescing: every caller computes what it asks for."""

    async def run(self, keys: list[str], compute: Compute) -> list[bytes]:
        return await compute(list(range(len(keys))))
