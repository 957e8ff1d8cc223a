"""uvicorn's HTTP protocol with a deadline on request headers, and the options both servers run with.

uvicorn closes a keep-alive connection that stays idle after a response,
but a connection that never completes its request headers (slow-loris: one
byte every few seconds, or nothing at all) stays open for ever, each one a
socket and a buffer. Here the headers of every request must be complete
within `header_timeout_s` of the connection opening or of the first byte of
the next request; otherwise the connection gets a 408 and is closed. Every
close lingers (LingeringTransport), so refusals reach the client.
Request bodies are bounded by http_limits.py, WebSocket clients by pings
and the hello deadline (connection.py).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from mlitb.ws_protocol import LimitedWebSocketProtocol

_TIMEOUT_BODY = b'{"error": "the request headers did not arrive in time (MLITB_HTTP_READ_TIMEOUT_S)"}'
TIMEOUT_RESPONSE = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
                    b"content-length: %d\r\n\r\n%s" % (len(_TIMEOUT_BODY), _TIMEOUT_BODY))


LINGER_S = 2.0


class LingeringTransport:
    """A transport whose `close` first lets the client read the answer, then closes.

    Closing a socket that still has unread input resets the connection, and the
    reset destroys the answer in flight: a client refused with 413 while it was
    still sending its body would see a network error instead. So `close` sends
    FIN after the answer, drops whatever input still comes, and closes when the
    client hangs up or after LINGER_S (nginx's lingering close).
    """

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self.lingering = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)

    def is_closing(self) -> bool:
        return self.lingering or self._transport.is_closing()

    def close(self) -> None:
        if self.lingering or self._transport.is_closing():
            return
        self.lingering = True
        if self._transport.can_write_eof():
            self._transport.write_eof()
        self._transport.resume_reading()
        self._loop.call_later(LINGER_S, self._transport.close)


class HeaderTimeoutProtocol(H11Protocol):
    """H11Protocol that closes a connection whose request headers are not complete in time, lingering."""

    header_timeout_s: float = 10.0
    _header_timer: asyncio.TimerHandle | None = None
    _waiting_cycle: Any = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._lingering = LingeringTransport(transport, self.loop)
        super().connection_made(self._lingering)  # type: ignore[arg-type]
        self._arm()

    def handle_websocket_upgrade(self, event: Any) -> None:
        self.transport = self._lingering._transport  # the WebSocket protocol closes its own way
        super().handle_websocket_upgrade(event)

    def data_received(self, data: bytes) -> None:
        if self._lingering.lingering:
            return  # the answer is out; what still comes is dropped
        if self._header_timer is None and (self.cycle is None or self.cycle.response_complete):
            self._arm()  # the first bytes of the next request on a kept-alive connection
        super().data_received(data)
        if self.cycle is not self._waiting_cycle:  # this request's headers are complete
            self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._waiting_cycle = self.cycle  # headers are complete when a new cycle exists
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._deadline)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _deadline(self) -> None:
        self._header_timer = None
        if self.transport.is_closing() or self._lingering.get_protocol() is not self:  # closed, or now a WebSocket
            return
        if self.cycle is not self._waiting_cycle:  # a request's headers arrived since: its handler runs
            return
        self.transport.write(TIMEOUT_RESPONSE)
        self.transport.close()


def protocol_options(read_timeout_s: float, idle_timeout_s: float) -> dict[str, Any]:
    """uvicorn.Config keywords: the header deadline, the WebSocket limit per connection, the idle timeout."""
    http = type("HeaderTimeoutProtocol", (HeaderTimeoutProtocol,), {"header_timeout_s": read_timeout_s})
    return {"http": http, "ws": LimitedWebSocketProtocol, "timeout_keep_alive": idle_timeout_s}


class OwnSignalsServer(uvicorn.Server):
    """A uvicorn server that leaves signals to its runner (`mlitb serve` stops its servers together)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield
