"""Hostile clients at the byte level, for the denial-of-service tests and bench/dos.py.

httpx and websockets behave: they send what they declare. These speak raw
HTTP/1.1 and raw WebSocket frames over asyncio streams, so a test can declare
a 60 MiB frame and stream garbage after it, trickle headers, or stall a body,
while its own memory stays small (one reused chunk).
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import msgpack

CHUNK = b"\xa5" * (64 << 10)


@dataclass
class HttpAnswer:
    status: int
    headers: dict[str, str]
    body: bytes


def _address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 80


async def read_answer(reader: asyncio.StreamReader) -> HttpAnswer:
    """One HTTP/1.1 response with a Content-Length body."""
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines if line)}
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return HttpAnswer(int(status_line.split()[1]), headers, body)


async def closed_by_server(reader: asyncio.StreamReader) -> bool:
    """True when the server closed the connection (EOF or reset) rather than waiting for more."""
    try:
        return await reader.read(1 << 16) == b""
    except ConnectionError:
        return True


async def request_head(url: str, method: str, path: str, headers: dict[str, str]) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection that has sent only the request line and headers."""
    reader, writer = await asyncio.open_connection(*_address(url))
    host, port = _address(url)
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}", *(f"{k}: {v}" for k, v in headers.items()), "", ""]
    writer.write("\r\n".join(lines).encode())
    await writer.drain()
    return reader, writer


async def stream_until(writer: asyncio.StreamWriter, total: int, stop: asyncio.Event) -> int:
    """Stream `total` garbage bytes (one reused chunk), stopping when `stop` is set or the server hangs up."""
    sent = 0
    try:
        while sent < total and not stop.is_set():
            chunk = CHUNK[: total - sent]
            writer.write(chunk)
            await writer.drain()
            sent += len(chunk)
    except ConnectionError:
        pass
    return sent


async def chunked_head_and(url: str, path: str, size: int) -> tuple[HttpAnswer, bool]:
    """POST `size` bytes of a chunked body and never send its last chunk: the answer, and whether
    the server then closed the connection (it must answer without waiting for the end)."""
    reader, writer = await request_head(url, "POST", path, {"Transfer-Encoding": "chunked", "Content-Type": "application/json"})
    sent = 0
    while sent < size:
        chunk = CHUNK[: size - sent]
        writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        sent += len(chunk)
    await writer.drain()
    answer = await asyncio.wait_for(read_answer(reader), 15)
    closed = await asyncio.wait_for(closed_by_server(reader), 15)
    writer.close()
    return answer, closed


async def post_streamed(url: str, path: str, body: bytes, headers: dict[str, str] | None = None,
                        timeout: float = 15) -> HttpAnswer:
    """POST `body` with its Content-Length, in slices, reading the answer meanwhile; stop sending once it came."""
    reader, writer = await request_head(url, "POST", path, {"Content-Length": str(len(body)),
                                        "Content-Type": "application/json", **(headers or {})})
    answering = asyncio.create_task(read_answer(reader))
    view = memoryview(body)
    try:
        for start in range(0, len(body), len(CHUNK)):
            if answering.done():
                break
            writer.write(view[start:start + len(CHUNK)])
            await writer.drain()
    except ConnectionError:
        pass
    answer = await asyncio.wait_for(answering, timeout)
    writer.close()
    return answer


# ------------------------------------------------------------------ WebSocket

async def ws_open(ws_url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A WebSocket after its handshake, as raw streams."""
    parts = urlsplit(ws_url)
    reader, writer = await request_head(ws_url, "GET", parts.path or "/", {
        "Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version": "13"})
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 101"):
        raise AssertionError(f"no WebSocket handshake: {head[:200]!r}")
    return reader, writer


def frame_header(length: int, opcode: int = 0x2) -> bytes:
    """A final client frame's header (masked with a zero key, so the payload goes as it is)."""
    if length < 126:
        size = bytes([0x80 | length])
    elif length < 1 << 16:
        size = bytes([0x80 | 126]) + length.to_bytes(2, "big")
    else:
        size = bytes([0x80 | 127]) + length.to_bytes(8, "big")
    return bytes([0x80 | opcode]) + size + b"\0\0\0\0"


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """(opcode, payload) of the next server frame."""
    first, second = await reader.readexactly(2)
    length = second & 0x7F
    if length == 126:
        length = int.from_bytes(await reader.readexactly(2), "big")
    elif length == 127:
        length = int.from_bytes(await reader.readexactly(8), "big")
    return first & 0x0F, await reader.readexactly(length)


@dataclass
class WsRefusal:
    error: dict | None  # the msgpack error frame the master sent, if any
    close_code: int | None
    sent: int  # payload bytes that went out before the master closed


async def oversized_ws_frame(ws_url: str, declared: int, prefix: bytes = b"") -> WsRefusal:
    """Open a WebSocket, send `prefix` (whole frames), then a frame declaring `declared` bytes, and stream
    its payload until the master answers with a close frame (as a client that reads would)."""
    reader, writer = await ws_open(ws_url)
    writer.write(prefix + frame_header(declared))
    closed = asyncio.Event()
    refusal = WsRefusal(None, None, 0)

    async def read() -> None:
        try:
            while True:
                opcode, payload = await read_frame(reader)
                if opcode == 0x2:
                    message = msgpack.unpackb(payload, raw=False)
                    if message.get("type") == "error":
                        refusal.error = message
                elif opcode == 0x8:
                    refusal.close_code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            closed.set()

    reading = asyncio.create_task(read())
    refusal.sent = await stream_until(writer, declared, closed)
    try:
        await asyncio.wait_for(reading, 15)
    except TimeoutError:  # the master neither closed nor answered: the caller's assertions say so
        pass
    writer.close()
    return refusal


def masked_frame(payload: bytes) -> bytes:
    return frame_header(len(payload)) + payload


# ------------------------------------------------------------------ memory

def _status(field: str) -> int:
    match = re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.MULTILINE)
    assert match, field
    return int(match[1]) * 1024


def rss() -> int:
    return _status("VmRSS")


def reset_peak_rss() -> int:
    """Start a new peak-RSS measurement (Linux clear_refs 5); returns the current RSS."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return rss()


def peak_rss() -> int:
    return _status("VmHWM")
