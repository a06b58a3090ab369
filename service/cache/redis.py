"""Redis (single URL or Sentinel) behind tight timeouts, one quick retry and a circuit breaker.

Redis Cluster is the same cache with its own lookup and scan (``service.cache.cluster``)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from functools import partial
from typing import Any, Self, TypeAlias, TypeVar, cast

from pydantic import SecretStr
from redis.asyncio import Redis, RedisCluster
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import ExponentialBackoff
from redis.exceptions import RedisClusterException, RedisError

from service.cache.base import PredictionCache
from service.cache.breaker import BreakerState, CircuitBreaker
from service.cache.envelope import seal, unseal
from service.cache.pipelined import PipelinedLookups
from service.errors import CacheUnavailable
from service.observability import metrics
from service.settings import Settings

T = TypeVar("T")
log = logging.getLogger(__name__)

_OK = metrics.REDIS_COMMANDS.labels("ok")
_ERROR = metrics.REDIS_COMMANDS.labels("error")
_REJECTED = metrics.REDIS_COMMANDS.labels("rejected")
_CORRUPT = metrics.CACHE_CORRUPT

Client: TypeAlias = Redis | RedisCluster
"""What a round trip runs on: one master's client, or the cluster's."""

REDIS_ERRORS = (RedisError, RedisClusterException, OSError, TimeoutError)
"""Whatever a round trip may fail with because of Redis (a cluster's slot-map errors are not
RedisErrors): a verdict on Redis, never a failed request."""


def build_redis(settings: Settings) -> Redis | None:
    """A master client from the Sentinels or the URL; None when neither is configured."""
    limits = timeouts(settings)
    retry = quick_retry(settings)
    credentials = auth(settings)
    if settings.redis_sentinels:
        # The Sentinels' clients get the same quick retry: redis-py's default backs off for
        # seconds, which would hold every request to the deadline while they cannot be reached.
        sentinel_kwargs = {
            **limits,
            "retry": retry,
            **_auth(settings.redis_sentinel_username, settings.redis_sentinel_password),
            **(_tls(settings) if settings.redis_sentinel_tls else {}),
        }
        sentinel = Sentinel(  # type: ignore[no-untyped-call]
            settings.sentinel_addresses, sentinel_kwargs=sentinel_kwargs, **limits
        )
        client: Redis = sentinel.master_for(
            settings.redis_master_name, retry=retry, **credentials, **tls(settings), **limits
        )
        return client
    if settings.redis_url:
        # The scheme picks the connection class: rediss:// is TLS (Settings refuses
        # MEMOSERVE_REDIS_TLS with a redis:// URL), so only the certificate options go here.
        extra = _tls(settings) if settings.redis_url.startswith("rediss://") else {}
        extra.pop("ssl", None)
        return Redis.from_url(settings.redis_url, retry=retry, **credentials, **extra, **limits)
    return None


def timeouts(settings: Settings) -> dict[str, Any]:
    """Socket and connect timeouts of every connection (tens of milliseconds)."""
    return {
        "socket_timeout": settings.redis_socket_timeout_ms / 1000,
        "socket_connect_timeout": settings.redis_connect_timeout_ms / 1000,
    }


def quick_retry(settings: Settings) -> Retry:
    """Fail fast: one short retry, then the breaker decides. A long retry would hold requests
    for seconds during a failover or stick to the dead master."""
    return Retry(ExponentialBackoff(cap=0.02, base=0.005), settings.redis_retries)


def auth(settings: Settings) -> dict[str, Any]:
    """AUTH arguments of the data nodes (master, replicas, cluster nodes)."""
    return _auth(settings.redis_username, settings.redis_password)


def tls(settings: Settings) -> dict[str, Any]:
    """TLS arguments of the data nodes, or none when ``MEMOSERVE_REDIS_TLS`` is off."""
    return _tls(settings) if settings.redis_tls else {}


def _auth(username: str, password: SecretStr | None) -> dict[str, Any]:
    """AUTH arguments; none at all when neither is set, so a URL's own credentials stay."""
    out: dict[str, Any] = {}
    if username:
        out["username"] = username
    if password is not None:
        out["password"] = password.get_secret_value()
    return out


def _tls(settings: Settings) -> dict[str, Any]:
    """TLS arguments: the certificate and host name are always verified."""
    out: dict[str, Any] = {"ssl": True, "ssl_cert_reqs": "required", "ssl_check_hostname": True}
    if settings.redis_tls_ca_file:
        out["ssl_ca_certs"] = settings.redis_tls_ca_file
    if settings.redis_tls_cert_file:
        out["ssl_certfile"] = settings.redis_tls_cert_file
        out["ssl_keyfile"] = settings.redis_tls_key_file
    return out


class RedisCache(PredictionCache):
    """The shared cache. Every call goes through the breaker; errors become CacheUnavailable."""

    layer = "redis"

    def __init__(
        self,
        client: Client,
        breaker: CircuitBreaker,
        *,
        deadline_seconds: float,
        owns_client: bool = True,
        lookups: PipelinedLookups | None = None,
    ) -> None:
        self.client = client
        self.breaker = breaker
        self._deadline = deadline_seconds
        self._owns_client = owns_client
        self._lookups = lookups

    def sibling(self) -> RedisCache:
        """The same connections behind a breaker of their own, for background work (hot-row
        sampling, warm-up, purges, events): its failures must not open the breaker that
        guards the request path, nor its open state silence them."""
        breaker = CircuitBreaker(self.breaker.failure_threshold, self.breaker.reset_seconds)
        return type(self)(
            self.client,
            breaker,
            deadline_seconds=self._deadline,
            owns_client=False,
            lookups=self._lookups,
        )

    @classmethod
    def from_settings(cls, client: Client, settings: Settings) -> Self:
        """A cache with the configured breaker; its state is exported as a gauge."""
        breaker = CircuitBreaker(
            settings.breaker_failure_threshold,
            settings.breaker_reset_seconds,
            on_change=_export_state,
        )
        per_try = (settings.redis_connect_timeout_ms + settings.redis_socket_timeout_ms) / 1000
        # Discovery (Sentinel, or the cluster's slots) plus the command, for each try, bounds
        # the wait on Redis.
        deadline = 2 * per_try * (settings.redis_retries + 1)
        lookups = None
        if settings.redis_pipelined_lookups and isinstance(client, Redis):
            lookups = PipelinedLookups(client, settings.redis_socket_timeout_ms / 1000)
        return cls(client, breaker, deadline_seconds=deadline, lookups=lookups)

    async def run(self, op: Callable[[Client], Awaitable[T]]) -> T:
        """Run one Redis round trip under the breaker and the deadline."""
        if not self.breaker.allow():
            _REJECTED.inc()
            raise CacheUnavailable("circuit breaker open")
        try:
            async with asyncio.timeout(self._deadline):
                result = await op(self.client)
        except REDIS_ERRORS as exc:
            self.breaker.record_failure()
            _ERROR.inc()
            raise CacheUnavailable(f"{type(exc).__name__}: {exc}") from exc
        except BaseException:
            # Cancelled, or a bug in ``op``: no verdict on Redis, but a half-open probe must not
            # stay "in flight" forever, or the breaker would never let another call through.
            self.breaker.record_abandoned()
            raise
        self.breaker.record_success()
        _OK.inc()
        return result

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """Values for ``keys``; one that is not an intact frame is a miss, and counted."""

        values = await self.run(lambda r: self._mget(r, keys))
        out: list[bytes | None] = []
        for value in values:
            if value is None:
                out.append(None)
                continue
            payload = unseal(value)
            if payload is None:
                _CORRUPT.inc()
            out.append(payload)
        return out

    async def set_many(self, items: Sequence[tuple[str, bytes]], ttl_seconds: int) -> None:
        if self._lookups is not None:
            lookups, sealed = self._lookups, [(k, seal(v)) for k, v in items]
            await self.run(lambda _r: lookups.set_many(sealed, ttl_seconds))
            return

        # A cluster's pipeline is split by node and sent to every node at once: still one
        # round trip per node touched.
        async def write(r: Client) -> None:
            async with r.pipeline(transaction=False) as pipe:
                for key, value in items:
                    pipe.set(key, seal(value), ex=ttl_seconds)
                await pipe.execute()

        await self.run(write)

    async def scan(self, pattern: str, count: int) -> AsyncIterator[list[bytes]]:
        """Pages of the keys matching ``pattern`` (SCAN MATCH), each page one round trip."""
        cursor = 0
        while True:
            page = partial(_scan_page, cursor=cursor, pattern=pattern, count=count)
            cursor, found = await self.run(page)
            yield found
            if cursor == 0:
                return

    async def subscriber(self) -> PubSub:
        """A pub/sub connection of its own (not through the breaker: the listener retries)."""
        return self.client.pubsub()

    async def _mget(self, r: Client, keys: Sequence[str]) -> list[bytes | None]:
        """One MGET: every key lives on the one master."""
        if self._lookups is not None:
            return await self._lookups.mget(list(keys))
        return cast(list[bytes | None], await r.mget(keys))

    async def close(self) -> None:
        if self._owns_client:
            if self._lookups is not None:
                await self._lookups.close()
            await self.client.aclose()


async def _scan_page(r: Client, cursor: int, pattern: str, count: int) -> tuple[int, list[bytes]]:
    next_cursor, found = await r.scan(cursor=cursor, match=pattern, count=count)
    return int(next_cursor), cast(list[bytes], found)


def _export_state(state: BreakerState) -> None:
    metrics.BREAKER_STATE.set(int(state))
    log.warning("redis circuit breaker %s", state.name.lower().replace("_", "-"))
