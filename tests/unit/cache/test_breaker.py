"""Circuit breaker state machine, on a fake clock."""

from __future__ import annotations

from service.cache.breaker import BreakerState, CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_opens_after_threshold_and_probes_after_cooldown() -> None:
    clock = Clock()
    seen: list[BreakerState] = []
    b = CircuitBreaker(3, 10.0, clock=clock, on_change=seen.append)
    for _ in range(2):
        assert b.allow()
        b.record_failure()
    assert b.state is BreakerState.CLOSED
    assert b.allow()
    b.record_failure()
    assert b.state is BreakerState.OPEN
    assert not b.allow()
    clock.now = 9.9
    assert not b.allow()
    clock.now = 10.0
    assert b.allow()  # the one probe
    assert b.state is BreakerState.HALF_OPEN
    assert not b.allow()  # only one at a time
    b.record_success()
    assert b.state is BreakerState.CLOSED
    assert seen == [BreakerState.OPEN, BreakerState.HALF_OPEN, BreakerState.CLOSED]


def test_failed_probe_reopens_for_another_cooldown() -> None:
    clock = Clock()
    b = CircuitBreaker(1, 5.0, clock=clock)
    b.allow()
    b.record_failure()
    clock.now = 5.0
    assert b.allow()
    b.record_failure()
    assert b.state is BreakerState.OPEN
    clock.now = 9.0
    assert not b.allow()
    clock.now = 10.0
    assert b.allow()


def test_success_resets_the_failure_count() -> None:
    b = CircuitBreaker(2, 1.0, clock=Clock())
    b.record_failure()
    b.record_success()
    b.record_failure()
    assert b.state is BreakerState.CLOSED
