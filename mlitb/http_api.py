"""What both HTTP servers (master and data) share: the admin check and the JSON error answers.

A researcher's action needs the admin token in `Authorization: Bearer TOKEN`;
both servers parse the header the same way and refuse with the same status
and body, so a client handles one answer whichever server it talks to.
"""

from __future__ import annotations

import hmac

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from mlitb.store import StoreUnavailable

ADMIN_NEEDED = ("this action needs the admin token: send 'Authorization: Bearer TOKEN' "
                "(mlitb serve prints it on first start)")


def bearer_token(request: Request) -> str | None:
    """The token of an `Authorization: Bearer TOKEN` header (scheme case-insensitive, spaces trimmed), or None."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def require_admin(request: Request, admin_token: str | None) -> None:
    """Pass, or 401 (no or wrong token) / 403 (this server has no admin token configured)."""
    if admin_token is None:
        raise HTTPException(403, "this server has no admin token configured (set MLITB_ADMIN_TOKEN)")
    given = bearer_token(request)
    if given is None or not hmac.compare_digest(given.encode(), admin_token.encode()):
        raise HTTPException(401, ADMIN_NEEDED if given is None else f"wrong admin token; {ADMIN_NEEDED}")


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    headers = dict(exc.headers or {})
    if exc.status_code == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=headers or None)


async def store_unavailable(request: Request, exc: Exception) -> Response:
    return JSONResponse({"error": f"the store is unavailable: {exc}"}, status_code=503)


ERROR_HANDLERS = {HTTPException: http_error, StoreUnavailable: store_unavailable}
