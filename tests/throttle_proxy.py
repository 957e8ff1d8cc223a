"""A loopback TCP proxy that behaves like a slow link: limited bytes/s each way and added delay.

Tests and bench/links.py put it between a worker and the master (the worker
connects to the proxy's port; WebSocket bytes pass through unchanged) to see
what compression and local steps buy on a phone's or a home uplink. Each
direction of each connection is its own serial link: a chunk leaves when the
link has sent everything before it (`bytes / rate` each) and arrives `delay`
later. `Link` is that schedule, pure and tested on its own; `ThrottleProxy`
runs it on real sockets and counts the bytes each way.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

CHUNK = 16 * 1024
QUEUED_CHUNKS = 64  # per direction: beyond this the sender feels TCP backpressure


@dataclass
class Link:
    """One direction: `rate` bytes/s (0: unlimited) and `delay` seconds added to every byte."""

    rate: float
    delay: float
    free_at: float = 0.0  # when the link finishes sending what it was given

    def deliver_at(self, now: float, nbytes: int) -> float:
        """When a chunk of `nbytes` handed over at `now` reaches the other end (advances the link)."""
        start = max(now, self.free_at)
        self.free_at = start + (nbytes / self.rate if self.rate > 0 else 0.0)
        return self.free_at + self.delay


@dataclass
class Traffic:
    """Bytes carried so far: up = client → server, down = server → client."""

    up: int = 0
    down: int = 0
    connections: int = 0


@dataclass
class ThrottleProxy:
    """Listen on 127.0.0.1:`port` and forward each connection to `target_port` through two `Link`s."""

    target_port: int
    rate: float  # bytes/s each way
    delay: float  # extra round-trip seconds, half added each way
    traffic: Traffic = field(default_factory=Traffic)
    port: int = 0
    _server: asyncio.base_events.Server | None = None
    _tasks: set[asyncio.Task] = field(default_factory=set)

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self._server.wait_closed()

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.CancelledError):  # stop() cancels the pipes; the server may cancel us
            await self._forward(client_r, client_w)

    async def _forward(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.traffic.connections += 1
        try:
            server_r, server_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            client_w.close()
            return
        half = self.delay / 2
        tasks = [asyncio.create_task(self._pipe(client_r, server_w, Link(self.rate, half), "up")),
                 asyncio.create_task(self._pipe(server_r, client_w, Link(self.rate, half), "down"))]
        self._tasks.update(tasks)
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._tasks.difference_update(tasks)
            for writer in (client_w, server_w):
                with contextlib.suppress(Exception):
                    writer.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, link: Link, way: str) -> None:
        queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue(QUEUED_CHUNKS)

        async def read() -> None:
            while chunk := await reader.read(CHUNK):
                await queue.put((link.deliver_at(time.monotonic(), len(chunk)), chunk))
            await queue.put(None)

        reading = asyncio.create_task(read())
        try:
            while (item := await queue.get()) is not None:
                due, chunk = item
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)  # the link's delay, not synchronisation
                writer.write(chunk)
                await writer.drain()
                setattr(self.traffic, way, getattr(self.traffic, way) + len(chunk))
            with contextlib.suppress(Exception):
                writer.write_eof()
        finally:
            reading.cancel()
            await asyncio.gather(reading, return_exceptions=True)


@contextlib.asynccontextmanager
async def throttled(target_port: int, rate: float, delay: float) -> AsyncIterator[ThrottleProxy]:
    """A running proxy to `target_port` for the duration of the block."""
    proxy = ThrottleProxy(target_port, rate, delay)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.stop()
