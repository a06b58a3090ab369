"""The in-process cache: LRU bound and expiry."""

from __future__ import annotations

from service.cache.memory import MemoryCache


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def test_lru_bound_evicts_least_recently_used() -> None:
    c = MemoryCache(2)
    c.set_many_now([("a", b"1"), ("b", b"2")], 60)
    assert c.get_many_now(["a"]) == [b"1"]  # a is now most recent
    c.set_many_now([("c", b"3")], 60)
    assert c.get_many_now(["a", "b", "c"]) == [b"1", None, b"3"]


def test_entries_expire_and_l1_caps_the_ttl() -> None:
    clock = Clock()
    c = MemoryCache(10, max_ttl_seconds=2.0, clock=clock)
    c.set_many_now([("a", b"1")], 3600)
    clock.now = 1.9
    assert c.get_many_now(["a"]) == [b"1"]
    clock.now = 2.0
    assert c.get_many_now(["a"]) == [None]
    assert len(c) == 0


def test_delete_prefix() -> None:
    c = MemoryCache(10)
    c.set_many_now([("ns:m:1:x", b"1"), ("ns:m:2:x", b"2")], 60)
    assert c.delete_prefix("ns:m:1:") == 1
    assert c.get_many_now(["ns:m:2:x"]) == [b"2"]
