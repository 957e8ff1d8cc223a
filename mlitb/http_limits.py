"""Request bodies are bounded before they are read: an ASGI middleware in front of every endpoint.

Without it a handler's `await request.body()` buffers whatever a client
sends: one unauthenticated `POST /api/layers/check` of 1M layers cost the
master 790 MiB and a 6 s stall. Here a declared `Content-Length` over the
limit is refused with 413 before a byte of the body is read; a chunked (or
lying) body is counted as it streams and refused the moment it passes the
limit. Every read of a body must arrive within `read_timeout_s` (408), so a
client that trickles a body cannot hold a handler forever. Refusals close the
connection, so the rest of an oversized body is never read either.

Each path gets `default_bytes` unless an override names it (the closure and
dataset uploads keep their own larger limits).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send


@dataclass(frozen=True)
class BodyLimits:
    """The body size a path may send; `overrides` are (method, path regex, bytes), first match wins."""

    default_bytes: int
    read_timeout_s: float
    overrides: Sequence[tuple[str, str, int]] = ()
    setting: str = "MLITB_MAX_BODY_BYTES"

    def for_request(self, method: str, path: str) -> tuple[int, str]:
        """The byte limit of this request and the setting an operator would raise."""
        for override_method, pattern, limit in self.overrides:
            if method == override_method and re.fullmatch(pattern, path):
                return limit, "the upload limit of this endpoint"
        return self.default_bytes, self.setting


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class BodyLimitMiddleware:
    """413 for a body over its limit, 408 for one that stalls; both before the app buffers it."""

    def __init__(self, app: ASGIApp, limits: BodyLimits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit, setting = self.limits.for_request(scope["method"], scope["path"])
        started = False

        async def tracked_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            declared = _content_length(scope)
            if declared is not None and declared > limit:
                raise _too_large(f"{declared} bytes", limit, setting)
            await self.app(scope, _bounded(receive, limit, setting, self.limits.read_timeout_s), tracked_send)
        except _Refused as exc:
            if started:  # the app answered already and then read on: nothing to tell the client
                return
            await _refuse(send, exc)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            if not value.strip().isdigit():
                raise _Refused(400, f"Content-Length {value[:40]!r} is not a byte count")
            return int(value)
    return None


def _bounded(receive: Receive, limit: int, setting: str, timeout_s: float) -> Receive:
    """`receive` that counts body bytes and bounds the wait for each read while the body is incomplete."""
    seen = 0
    complete = False

    async def bounded() -> Message:
        nonlocal seen, complete
        if complete:
            return await receive()  # after the body only http.disconnect comes, whenever it comes
        try:
            message = await asyncio.wait_for(receive(), timeout_s)
        except TimeoutError:
            raise _Refused(408, f"the request body did not arrive: no data for {timeout_s:g} s "
                                "(MLITB_HTTP_READ_TIMEOUT_S)") from None
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            complete = not message.get("more_body", False)
            if seen > limit:
                raise _too_large(f"at least {seen} bytes", limit, setting)
        else:
            complete = True
        return message

    return bounded


def _too_large(size: str, limit: int, setting: str) -> _Refused:
    return _Refused(413, f"the request body ({size}) is larger than this server accepts here: {limit} bytes "
                         f"({setting}); send less")


async def _refuse(send: Send, exc: _Refused) -> None:
    body = json.dumps({"error": exc.message}).encode()
    await send({"type": "http.response.start", "status": exc.status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),  # the rest of the body is never read
    ]})
    await send({"type": "http.response.body", "body": body})
