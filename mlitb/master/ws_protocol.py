"""uvicorn's WebSocket protocol with a message limit each connection sets for itself, refused before buffering.

uvicorn gives every connection one `ws_max_size`; the sans-io `websockets`
parser compares each frame's declared length with its connection's
`max_message_size` as soon as the frame header arrives, before it reads the
payload. With one limit for everybody it had to fit the largest trainer
result (64 MiB), so eight connections sending garbage cost the master
+525 MiB. Here the limit follows the connection's state: the app finds a
`MessageLimit` in the ASGI scope (`scope["extensions"][SCOPE_KEY]`) and
lowers or raises it as the client moves on (small before `welcome`, 4×P
plus overhead for a trainer). A frame over the limit is refused from its
header: the connection answers with the app's refusal frame (a
`frame_too_large` error) and a 1009 close, drops what follows, and the app
gets a `websocket.disconnect` with that code; the payload is never buffered.

Served by another WebSocket implementation the scope has no `MessageLimit`
and the app checks the size of each message after the fact (connection.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.exceptions import PayloadTooBig
from websockets.frames import Frame, Opcode
from websockets.server import ServerProtocol

SCOPE_KEY = "mlitb.message_limit"
MESSAGE_TOO_BIG = 1009
LINGER_S = 1.0


@dataclass
class MessageLimit:
    """The largest message the connection accepts now, and what to tell a client that sends more."""

    max_bytes: int
    refusal: Callable[[int | None, int], bytes] | None = None
    """(size the frame declared, limit) -> the frame sent before closing; None: just close."""
    refused: int = 0
    _parser: ServerProtocol | None = field(default=None, repr=False)

    def set(self, max_bytes: int) -> None:
        """Apply to every frame from the next one on."""
        self.max_bytes = max_bytes
        if self._parser is not None:
            self._parser.max_message_size = max_bytes


class LimitedWebSocketProtocol(WebSocketsSansIOProtocol):
    """Exposes the parser's message limit to the app and answers an oversized frame before closing."""

    limit: MessageLimit | None = None
    _refused = False

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)
        if scope is not None:  # the handshake was accepted; the app's task has not run yet
            self.limit = MessageLimit(self.conn.max_message_size or 0, _parser=self.conn)
            scope["extensions"][SCOPE_KEY] = self.limit

    def handle_parser_exception(self) -> None:
        exc = self.conn.parser_exc
        if not isinstance(exc, PayloadTooBig) or self.limit is None:
            super().handle_parser_exception()
            return
        if self._refused:  # more of the refused payload arrived: the parser discards it
            return
        self._refused = True
        self.limit.refused += 1
        assert self.conn.close_sent is not None
        self.queue.put_nowait({"type": "websocket.disconnect", "code": self.conn.close_sent.code,
                               "reason": self.conn.close_sent.reason})
        output = b"".join(self.conn.data_to_send())  # the close frame (1009) the parser queued
        if self.limit.refusal is not None:
            size = exc.size if exc.message is None else None
            # An uncompressed data frame is valid with or without permessage-deflate.
            output = Frame(Opcode.BINARY, self.limit.refusal(size, self.limit.max_bytes)).serialize(mask=False) + output
        self.transport.write(output)
        self.close_sent = True
        if self.read_paused:
            self.read_paused = False
            self.transport.resume_reading()
        # Close after a short linger, not at once: closing with unread input resets the connection, and a
        # reset can destroy the refusal before the client reads it. Meanwhile input is read and dropped.
        self.close_timer = self.loop.call_later(LINGER_S, self.transport.close)
