"""Security headers on every answer: an ASGI middleware and the policies the two servers use.

The admin token lives in the browser's localStorage, so the pages must not
run script anyone could inject, and must not be framed (clickjacking the
researcher's buttons). Every page's script is a module file (no inline
script), so the policy allows scripts from this origin only, plus
WebAssembly compilation for the engine. A response that sets its own
`Content-Security-Policy` keeps it: the standalone closure page inlines its
script by design and allows exactly that script by its hash.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send

BASE_HEADERS: tuple[tuple[str, str], ...] = (
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("x-frame-options", "DENY"),  # frame-ancestors for browsers that predate it
)


def page_policy(connect_origins: Iterable[str] = ()) -> str:
    """The master's pages: own-origin scripts and workers, WebAssembly, fetches to the data server."""
    connect = " ".join(["'self'", *sorted({o for o in connect_origins if o})])
    return "; ".join((
        "default-src 'self'",
        "script-src 'self' 'wasm-unsafe-eval'",
        "worker-src 'self'",
        "style-src 'self' 'unsafe-inline'",  # style attributes in the pages; styles cannot run code
        "img-src 'self' data: blob:",
        "media-src 'self' blob:",
        f"connect-src {connect}",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ))


API_POLICY = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
"""For servers that answer only data (the data server): nothing in an answer may run or be framed."""


def origin_of(url: str) -> str:
    """`scheme://host[:port]` of a URL ('' when it has none), for connect-src."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""


def script_hash(script: str) -> str:
    """A CSP source that allows exactly this inline script's text."""
    digest = hashlib.sha256(script.encode()).digest()
    return f"'sha256-{base64.b64encode(digest).decode()}'"


class SecurityHeadersMiddleware:
    """Adds the headers to every HTTP answer that does not set them itself."""

    def __init__(self, app: ASGIApp, policy: str) -> None:
        self.app = app
        self.headers = [(name.encode(), value.encode()) for name, value in
                        (("content-security-policy", policy), *BASE_HEADERS)]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(name, value) for name, value in self.headers if name not in present]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_headers)
