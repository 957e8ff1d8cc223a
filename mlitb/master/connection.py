"""One WebSocket client: its send queue, its receive loop, and how it gets dropped.

Sending never blocks the project's event loop: frames go into a per-client
queue drained by the client's own task, and per-iteration frames (params,
work) replace any undelivered ones, so a slow client holds at most one
iteration's parameters in memory and simply skips stale iterations. Every
received frame is validated by `parse_client_frame` before anything else
sees it; bad frames are answered with `error` and counted, and a client that
keeps sending them is dropped. Liveness (WebSocket pings) is uvicorn's job,
configured from Settings in serve.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections import deque
from dataclasses import dataclass, field
from typing import Protocol

from starlette.websockets import WebSocket, WebSocketDisconnect

from mlitb.master.message_limits import message_limit, refusal_text
from mlitb.master.settings import Settings
from mlitb.master.ws_protocol import MESSAGE_TOO_BIG, SCOPE_KEY, MessageLimit
from mlitb.protocol import (
    Cached,
    ClientMessage,
    Hello,
    ProtocolError,
    Result,
    State,
    error_frame,
    parse_client_frame,
)


@dataclass
class _Batch:
    frames: tuple[bytes, ...]
    replaceable: bool


@dataclass
class ConnectionStats:
    """Master-wide WebSocket totals for /metrics."""

    open: int = 0
    total: int = 0
    bad_frames: int = 0
    dropped: int = 0
    refused: int = 0
    too_large: int = 0  # messages refused from their header (ws_protocol.py), also in bad_frames


@dataclass
class Connection:
    """A connected client's outgoing side. `send*` are synchronous and never wait on the network."""

    ws: WebSocket
    max_pending: int
    id: str = field(default_factory=lambda: secrets.token_hex(6))
    bad_frames: int = 0
    closing: bool = False
    _queue: deque[_Batch] = field(default_factory=deque)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)

    def send(self, *frames: bytes) -> None:
        """Queue frames that must all arrive, in order (welcome, assign, idle, error)."""
        if self.closing:
            return
        if len(self._queue) >= self.max_pending:
            self.close(error_frame("too_slow", "the client does not read its frames; reconnect when ready", fatal=True))
            return
        self._queue.append(_Batch(frames, replaceable=False))
        self._wake.set()

    def send_iteration(self, *frames: bytes) -> None:
        """Queue one iteration's frames, replacing an older iteration's that were not sent yet."""
        if self.closing:
            return
        for batch in self._queue:
            if batch.replaceable:
                self._queue.remove(batch)
                break
        self._queue.append(_Batch(frames, replaceable=True))
        self._wake.set()

    def close(self, last_frame: bytes | None = None) -> None:
        """Send `last_frame` (a fatal error) after what is queued, then close the socket."""
        if self.closing:
            return
        if last_frame is not None:
            self._queue.append(_Batch((last_frame,), replaceable=False))
        self.closing = True
        self._wake.set()

    async def run_sender(self) -> None:
        """Drain the queue until closed; the socket is closed on the way out."""
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while self._queue:
                    for frame in self._queue.popleft().frames:
                        await self.ws.send_bytes(frame)
                if self.closing:
                    break
        except (WebSocketDisconnect, RuntimeError, OSError):
            pass
        finally:
            self.closing = True
            with contextlib.suppress(Exception):
                await self.ws.close()


class Session(Protocol):
    """What a connection talks to after `hello`: a project's runtime (runtime.py)."""

    param_count: int

    def on_cached(self, conn: Connection, shards: tuple[str, ...]) -> None: ...
    def on_result(self, conn: Connection, result: Result) -> None: ...
    def on_state(self, conn: Connection, hidden: bool) -> None: ...
    def leave(self, conn: Connection) -> None: ...


class Lobby(Protocol):
    """What a connection talks to before `hello`: finds the project and joins it."""

    def join(self, conn: Connection, hello: Hello) -> Session:
        """Send welcome etc. or raise ProtocolError (unknown_project...)."""


async def serve_connection(ws: WebSocket, lobby: Lobby, settings: Settings, stats: ConnectionStats) -> None:
    """The whole life of one WebSocket client, from accept to close."""
    await ws.accept()
    if stats.open >= settings.max_connections:
        stats.refused += 1
        await ws.send_bytes(error_frame("too_many_connections", f"this master serves at most {settings.max_connections} "
                                        "connections; try again later", fatal=True))
        await ws.close()
        return
    stats.open += 1
    stats.total += 1
    try:
        await _serve(ws, lobby, settings, stats)
    finally:
        stats.open -= 1


def _message_limit(ws: WebSocket, settings: Settings) -> MessageLimit:
    """The connection's own limit (ws_protocol.py), set to the pre-welcome size; a local one elsewhere."""
    limit = ws.scope.get("extensions", {}).get(SCOPE_KEY) or MessageLimit(0)
    limit.set(message_limit(settings))
    return limit


async def _serve(ws: WebSocket, lobby: Lobby, settings: Settings, stats: ConnectionStats) -> None:
    conn = Connection(ws, settings.max_pending_frames)
    sender = asyncio.create_task(conn.run_sender())
    session: Session | None = None
    limit = _message_limit(ws, settings)
    limit.refusal = lambda size, most: error_frame(
        "frame_too_large", refusal_text(size, most, session is not None), fatal=True)
    try:
        while not conn.closing:
            try:
                async with asyncio.timeout(None if session else settings.hello_timeout_s):
                    message = await ws.receive()
            except TimeoutError:
                conn.close(error_frame("hello_timeout", f"no 'hello' within {settings.hello_timeout_s:g} s; "
                                       "send it right after connecting", fatal=True))
                break
            if message["type"] == "websocket.disconnect":
                if message.get("code") == MESSAGE_TOO_BIG:
                    stats.too_large += 1
                    stats.bad_frames += 1
                break
            frame = message.get("bytes") if message.get("bytes") is not None else message.get("text")
            try:
                parsed = parse_client_frame(
                    frame,
                    param_count=session.param_count if session else None,
                    max_bytes=limit.max_bytes,
                    max_grad_norm_per_example=settings.max_grad_norm_per_example,
                )
                session = dispatch(conn, parsed, session, lobby)
                if isinstance(parsed, Hello):  # welcomed: the limit now fits what this client sends
                    limit.set(message_limit(settings, parsed.role, session.param_count))
            except ProtocolError as exc:
                conn.bad_frames += 1
                stats.bad_frames += 1
                if exc.fatal:
                    conn.close(error_frame(exc.code, exc.message, fatal=True))
                elif conn.bad_frames > settings.max_bad_frames:
                    stats.dropped += 1
                    conn.close(error_frame("too_many_errors", f"more than {settings.max_bad_frames} bad frames; "
                                           f"the last: {exc.message}", fatal=True))
                else:
                    conn.send(error_frame(exc.code, exc.message))
    except WebSocketDisconnect:
        pass
    finally:
        if session is not None:
            session.leave(conn)
        conn.close()
        await sender


def dispatch(conn: Connection, message: ClientMessage, session: Session | None, lobby: Lobby) -> Session | None:
    """Route one valid message; returns the session (new after hello)."""
    if isinstance(message, Hello):
        if session is not None:
            raise ProtocolError("unexpected", "'hello' was already sent on this connection")
        return lobby.join(conn, message)
    if session is None:
        raise ProtocolError("unexpected", "send 'hello' and wait for 'welcome' first")
    if isinstance(message, Cached):
        session.on_cached(conn, message.shards)
    elif isinstance(message, Result):
        session.on_result(conn, message)
    elif isinstance(message, State):
        session.on_state(conn, message.hidden)
    return session
