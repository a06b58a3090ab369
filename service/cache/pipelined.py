"""Auto-pipelined lookups and writes: the MGETs and SETs of a worker's concurrent requests share
one connection and, within one turn of the event loop, one write; the replies come back in order.

A Redis hit spent a quarter of its CPU in redis-py's command path (pool checkout and release,
the retry wrapper, its own timeout, packing); this path keeps one connection checked out of the
client's pool, so Sentinel discovery, AUTH, TLS and the handshake stay redis-py's, and does the
rest itself with hiredis (MGET and SET replies read the same in RESP2 and RESP3). An error, EOF,
or no reply at all for ``timeout`` seconds while commands wait (a master gone without a reset)
drops the connection and fails every command in flight (a miss or a lost write for each; the
breaker decides); the next command takes a new connection. A lookup abandoned by its request
leaves the connection alone: its reply is read and dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import Any

import hiredis
from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

Reply = Any  # an MGET's list of values, or a SET's b"OK"


def pack_mget(keys: list[bytes]) -> bytes:
    """``MGET keys...`` in RESP."""
    parts = [b"*%d\r\n$4\r\nMGET\r\n" % (len(keys) + 1)]
    parts += [b"$%d\r\n%s\r\n" % (len(k), k) for k in keys]
    return b"".join(parts)


def pack_set(key: bytes, value: bytes, ttl: bytes) -> bytes:
    """``SET key value EX ttl`` in RESP."""
    return b"*5\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n$2\r\nEX\r\n$%d\r\n%s\r\n" % (
        len(key),
        key,
        len(value),
        value,
        len(ttl),
        ttl,
    )


class PipelinedLookups:
    """MGET and SET over one shared connection taken from ``client``'s pool."""

    def __init__(self, client: Redis, timeout: float) -> None:
        self._pool = client.connection_pool
        self._timeout = timeout
        self._replies = 0  # replies read on the connection; the watchdog's sign of life
        self._seen = -1
        self._releasing: set[asyncio.Task[None]] = set()
        self._conn: AbstractConnection | None = None
        self._connecting: asyncio.Lock | None = None
        self._waiting: deque[asyncio.Future[Reply]] = deque()
        self._out: list[bytes] = []
        self._reader_task: asyncio.Task[None] | None = None

    async def mget(self, keys: list[str]) -> list[bytes | None]:
        """The values of ``keys`` (None for a missing one), in one shared round trip."""
        result: list[bytes | None] = await self._send([pack_mget([k.encode() for k in keys])])
        return result

    async def set_many(self, items: list[tuple[str, bytes]], ttl_seconds: int) -> None:
        """SET each key with an expiry; raises if the last SET is refused (a refusal such as
        OOM or NOPERM refuses them all)."""
        ttl = b"%d" % ttl_seconds
        await self._send([pack_set(k.encode(), v, ttl) for k, v in items])

    async def _send(self, commands: list[bytes]) -> Reply:
        """Queue ``commands`` for this turn's write; the last one's reply."""
        conn = self._conn if self._conn is not None else await self._connect()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Reply] = loop.create_future()
        if not self._out:
            loop.call_soon(self._flush, conn)
        self._out += commands
        if len(commands) > 1:
            self._waiting.extend([_ignored(loop)] * (len(commands) - 1))
        self._waiting.append(future)
        return await future

    async def close(self) -> None:
        """Give the connection back, failing lookups in flight."""
        if self._conn is not None:
            self._drop(self._conn, RedisConnectionError("closed"))
        if self._reader_task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader_task
        if self._releasing:
            await asyncio.gather(*self._releasing)

    async def _connect(self) -> AbstractConnection:
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._conn is None:
                conn = await self._pool.get_connection()  # type: ignore[no-untyped-call]
                self._conn = conn
                self._reader_task = asyncio.create_task(self._read(conn), name="redis-lookups")
                self._seen = -1
                asyncio.get_running_loop().call_later(self._timeout, self._watch, conn)
            return self._conn

    def _watch(self, conn: AbstractConnection) -> None:
        """Drop ``conn`` when lookups waited through a whole interval without any reply."""
        if conn is not self._conn:
            return
        if self._waiting and self._seen == self._replies:
            self._drop(conn, RedisTimeoutError(f"no reply from Redis in {self._timeout:g}s"))
            return
        self._seen = self._replies if self._waiting else -1
        asyncio.get_running_loop().call_later(self._timeout, self._watch, conn)

    def _flush(self, conn: AbstractConnection) -> None:
        if conn is not self._conn:
            return  # dropped meanwhile; its lookups have failed
        data, self._out = b"".join(self._out), []
        writer: Any = conn._writer  # noqa: SLF001 - the connection is ours until dropped
        try:
            writer.write(data)
        except Exception as exc:  # noqa: BLE001 - any write failure is a dead connection
            self._drop(conn, RedisConnectionError(f"write failed: {exc}"))

    async def _read(self, conn: AbstractConnection) -> None:
        reader: Any = conn._reader  # noqa: SLF001
        parser = hiredis.Reader()
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    raise RedisConnectionError("Redis closed the connection")
                parser.feed(data)
                while (reply := parser.gets()) is not False:
                    self._replies += 1
                    if not self._waiting:
                        raise RedisConnectionError("a reply nobody asked for")
                    future = self._waiting.popleft()
                    if future.done():
                        continue
                    if isinstance(reply, hiredis.ReplyError):
                        future.set_exception(ResponseError(str(reply)))
                    else:
                        future.set_result(reply)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - every lookup in flight learns of it
            if not isinstance(exc, RedisConnectionError):
                exc = RedisConnectionError(f"{type(exc).__name__}: {exc}")
            self._drop(conn, exc)

    def _drop(self, conn: AbstractConnection, exc: Exception) -> None:
        if conn is not self._conn:
            return
        self._conn = None
        self._out = []
        waiting, self._waiting = self._waiting, deque()
        for future in waiting:
            if not future.done():
                future.set_exception(exc)
        reader = self._reader_task
        if reader is not None and reader is not asyncio.current_task():
            reader.cancel()
        task = asyncio.get_running_loop().create_task(self._release(conn))
        self._releasing.add(task)
        task.add_done_callback(self._releasing.discard)

    async def _release(self, conn: AbstractConnection) -> None:
        with contextlib.suppress(Exception):
            await conn.disconnect()
        with contextlib.suppress(Exception):
            await self._pool.release(conn)


_IGNORED: dict[asyncio.AbstractEventLoop, asyncio.Future[Reply]] = {}


def _ignored(loop: asyncio.AbstractEventLoop) -> asyncio.Future[Reply]:
    """A done future standing for a reply nobody waits for (all but a batch's last SET)."""
    future = _IGNORED.get(loop)
    if future is None:
        future = _IGNORED[loop] = loop.create_future()
        future.cancel()
    return future
