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
`frame_too_large` error), closes with 1009, and the app gets a
`websocket.disconnect` with that code; the payload is never buffered.

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

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)
        if scope is not None:  # the handshake was accepted; the app's task has not run yet
            self.limit = MessageLimit(self.conn.max_message_size or 0, _parser=self.conn)
            scope["extensions"][SCOPE_KEY] = self.limit

    def handle_parser_exception(self) -> None:
        exc = self.conn.parser_exc
        if isinstance(exc, PayloadTooBig) and self.limit is not None:
            self.limit.refused += 1
            if self.limit.refusal is not None and not self.transport.is_closing():
                size = exc.size if exc.message is None else None
                frame = Frame(Opcode.BINARY, self.limit.refusal(size, self.limit.max_bytes))
                # An uncompressed data frame is valid with or without permessage-deflate; it goes out
                # before the close frame the parser queued.
                self.transport.write(frame.serialize(mask=False))
        super().handle_parser_exception()
