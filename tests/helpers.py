"""Helpers the tests share: free ports, real uvicorn servers, real Redis."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import uvicorn

from mlitb.http_protocol import protocol_options

REPO = Path(__file__).resolve().parent.parent
TOKEN = "test-admin-token"  # the admin token of every server the tests start
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
T = TypeVar("T")
DATASETS = REPO / "mlitb" / "datasets"


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.asynccontextmanager
async def serve_app(app, port: int | None = None, read_timeout_s: float = 10.0, idle_timeout_s: float = 5.0,
                    ws_max_size: int = 16 * 1024 * 1024) -> AsyncIterator[str]:
    """Run an ASGI app on a real uvicorn in this event loop, hardened as `mlitb serve` runs it; yield its base URL."""
    port = port or free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on",
                            ws_max_size=ws_max_size, **protocol_options(read_timeout_s, idle_timeout_s))
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("uvicorn exited before it started")
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


def wait_for_port(port: int, timeout: float = 20.0, process: subprocess.Popen | None = None) -> None:
    """Block until something accepts connections on 127.0.0.1:port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listened on port {port} within {timeout} s")


def poll_until(condition: Callable[[], T], *, timeout: float, what: str, interval: float = 0.1) -> T:
    """Call `condition` every `interval` s until it returns something truthy; return that.

    For waiting on a real process through its API (e.g. "the master shows iteration 20"):
    bounded in time, and the TimeoutError says what never happened.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what}: not within {timeout} s")
        time.sleep(interval)


async def until(condition: Callable[[], Awaitable[object]], *, timeout: float, what: str, interval: float = 0.1) -> None:
    """Await `condition()` (an API call, a page evaluation) until it is truthy, bounded in time."""
    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout} s")
        await asyncio.sleep(interval)
