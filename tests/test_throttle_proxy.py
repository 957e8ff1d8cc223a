"""The throttling proxy: its link schedule by hand, and real bytes through real sockets unchanged."""

from __future__ import annotations

import asyncio
import os

import pytest

from tests.throttle_proxy import Link, throttled


def test_link_serialises_chunks_at_its_rate_and_adds_the_delay():
    link = Link(rate=1000.0, delay=0.5)
    assert link.deliver_at(10.0, 500) == pytest.approx(11.0)   # 0.5 s to send, 0.5 s delay
    assert link.deliver_at(10.1, 1000) == pytest.approx(12.0)  # waits for the first chunk to leave
    assert link.deliver_at(20.0, 0) == pytest.approx(20.5)     # an idle link only delays
    assert Link(rate=0, delay=0.1).deliver_at(1.0, 10**9) == pytest.approx(1.1)  # 0: unlimited


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()


def test_bytes_pass_unchanged_both_ways_and_are_counted():
    async def main() -> None:
        server = await asyncio.start_server(_echo, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        payload = os.urandom(300_000)
        async with throttled(port, rate=5e6, delay=0.02) as proxy:
            reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
            writer.write(payload)
            await writer.drain()
            got = await asyncio.wait_for(reader.readexactly(len(payload)), 60)
            writer.close()
            assert got == payload
            assert proxy.traffic.up == len(payload)
            assert proxy.traffic.down == len(payload)
            assert proxy.traffic.connections == 1
        server.close()
        await server.wait_closed()

    asyncio.run(main())
