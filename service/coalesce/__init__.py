"""Coalescing: concurrent misses of one key are computed once.

``Coalescer.run(keys, compute)`` answers every key, calling ``compute(positions)`` only for the
positions it must compute itself. Implementations compose: ``SingleFlight`` (in-process
futures) in front of ``RedisLockCoalescer`` (a ``SET NX PX`` lock per key across replicas) or of
``Direct`` (no coalescing).
"""

from service.coalesce.base import Coalescer, Compute, Direct
from service.coalesce.redis_lock import RedisLockCoalescer
from service.coalesce.single_flight import SingleFlight

__all__ = ["Coalescer", "Compute", "Direct", "RedisLockCoalescer", "SingleFlight"]
