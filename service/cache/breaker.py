"""A circuit breaker, so a dead Redis costs nothing per request."""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import IntEnum


class BreakerState(IntEnum):
    """Values exported as the ``memoserve_breaker_state`` gauge."""

    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


class CircuitBreaker:
    """closed → open after N consecutive failures → one half-open probe after a cool-down."""

    def __init__(
        self,
        failure_threshold: int,
        reset_seconds: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[BreakerState], None] | None = None,
    ) -> None:
        self.failure_threshold = failure_threshold
        self.reset_seconds = reset_seconds
        self._clock = clock
        self._on_change = on_change
        self.state = BreakerState.CLOSED
        self.failures = 0
        self._opened_at = 0.0
        self._probe_in_flight = False

    def allow(self) -> bool:
        """Whether a call may go to Redis now; in half-open only one probe at a time."""
        if self.state is BreakerState.CLOSED:
            return True
        if self.state is BreakerState.OPEN:
            if self._clock() - self._opened_at < self.reset_seconds:
                return False
            self._set(BreakerState.HALF_OPEN)
        if self._probe_in_flight:
            return False
        self._probe_in_flight = True
        return True

    def record_success(self) -> None:
        """A call succeeded: close."""
        self.failures = 0
        self._probe_in_flight = False
        if self.state is not BreakerState.CLOSED:
            self._set(BreakerState.CLOSED)

    def record_abandoned(self) -> None:
        """A call ended with neither answer (cancelled): let the next probe through."""
        self._probe_in_flight = False

    def record_failure(self) -> None:
        """A call failed: count it; open at the threshold or when a probe fails."""
        self.failures += 1
        self._probe_in_flight = False
        if self.state is BreakerState.HALF_OPEN or self.failures >= self.failure_threshold:
            self._opened_at = self._clock()
            if self.state is not BreakerState.OPEN:
                self._set(BreakerState.OPEN)

    def _set(self, state: BreakerState) -> None:
        self.state = state
        if self._on_change is not None:
            self._on_change(state)
