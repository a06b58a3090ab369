"""A loopback TCP proxy that injects faults between the service and Redis or MLflow.

It runs its own event loop in a thread, so a test (synchronous, like the replicas it drives)
switches faults with plain calls while traffic flows::

    proxy = FaultProxy(LOOPBACK, redis_port).start()
    proxy.set(latency=0.5)   # every chunk, both ways, half a second late
    proxy.set(stall=True)    # bytes are held, connections stay open: a silent dead peer
    proxy.set(refuse=True)   # new connections are accepted and reset at once
    proxy.stall_live()       # hold the live connections' bytes for good (new ones pass)
    proxy.reset_live()       # RST every live connection now
    proxy.set(cut_after=4096)  # reset a connection after that many bytes towards the client
    proxy.set()              # pass bytes through again
    proxy.stop()
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from devtools.localstack.processes import LOOPBACK, free_port

T = TypeVar("T")


@dataclass
class Faults:
    """What the proxy does now; every field off means pass-through."""

    latency: float = 0.0
    stall: bool = False
    refuse: bool = False
    cut_after: int | None = None


@dataclass(eq=False)  # hashed by identity: links live in a set
class _Link:
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter
    to_client: int = 0
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    flowing: asyncio.Event = field(default_factory=asyncio.Event)


class FaultProxy:
    """``127.0.0.1:port`` forwards to ``target``, with the faults of :meth:`set`."""

    def __init__(self, target_host: str, target_port: int, *, port: int | None = None) -> None:
        self.target = (target_host, target_port)
        self.port = port or free_port()
        self.faults = Faults()
        self.connections = 0
        """Connections accepted so far (refused ones included)."""
        self._links: set[_Link] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._resume = asyncio.Event()

    @property
    def address(self) -> str:
        """``host:port`` of the proxy."""
        return f"{LOOPBACK}:{self.port}"

    def start(self) -> FaultProxy:
        """Listen; returns once connections are accepted."""
        self._thread.start()
        self._call(self._listen())
        return self

    def stop(self) -> None:
        """Close every connection and the listener, and end the thread."""
        self._call(self._close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def set(
        self,
        *,
        latency: float = 0.0,
        stall: bool = False,
        refuse: bool = False,
        cut_after: int | None = None,
    ) -> None:
        """Replace the faults (no argument: pass-through)."""
        faults = Faults(latency, stall, refuse, cut_after)

        def apply() -> None:
            self.faults = faults
            if stall:
                self._resume.clear()
            else:
                self._resume.set()

        self._loop.call_soon_threadsafe(apply)
        self._call(asyncio.sleep(0))  # applied before this returns

    def stall_live(self) -> int:
        """Hold the bytes of every live connection for good, without closing it (new ones
        pass): a peer that died silently. Returns how many."""

        async def stall() -> int:
            for link in self._links:
                link.flowing.clear()
            return len(self._links)

        return self._call(stall())

    def reset_live(self) -> int:
        """Reset (RST, not FIN) every live connection; returns how many."""
        return self._call(self._reset_all())

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    async def _listen(self) -> None:
        self._resume.set()
        self._server = await asyncio.start_server(self._accept, LOOPBACK, self.port)

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        await self._reset_all()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.sleep(0.1)  # let the transports finish closing their sockets

    async def _reset_all(self) -> int:
        links = list(self._links)
        for link in links:
            self._drop(link)
        return len(links)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        if self.faults.refuse:
            _rst(writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            _rst(writer)
            return
        link = _Link(writer, up_writer)
        link.flowing.set()
        self._links.add(link)
        link.tasks = [
            asyncio.create_task(self._pump(reader, up_writer, link, towards_client=False)),
            asyncio.create_task(self._pump(up_reader, writer, link, towards_client=True)),
        ]

    async def _pump(
        self,
        source: asyncio.StreamReader,
        sink: asyncio.StreamWriter,
        link: _Link,
        *,
        towards_client: bool,
    ) -> None:
        try:
            while True:
                chunk = await source.read(65536)
                if not chunk:
                    break
                await self._resume.wait()  # a stall holds the bytes, the socket stays open
                await link.flowing.wait()
                if self.faults.latency:
                    await asyncio.sleep(self.faults.latency)
                if towards_client and self.faults.cut_after is not None:
                    room = self.faults.cut_after - link.to_client
                    if room < len(chunk):
                        sink.write(chunk[: max(room, 0)])
                        await sink.drain()
                        self._drop(link)
                        return
                    link.to_client += len(chunk)
                sink.write(chunk)
                await sink.drain()
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            if link in self._links:
                self._drop(link, reset=False)

    def _drop(self, link: _Link, *, reset: bool = True) -> None:
        self._links.discard(link)
        for writer in (link.client, link.upstream):
            if reset:
                _rst(writer)
            else:
                writer.close()
        for task in link.tasks:
            if task is not asyncio.current_task():
                task.cancel()


def _rst(writer: asyncio.StreamWriter) -> None:
    """Close with SO_LINGER 0, so the peer sees a reset rather than an orderly end."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    writer.transport.abort()
