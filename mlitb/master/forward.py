"""A project's API on any master of a tier: requests for a project owned elsewhere go to its owner.

With several masters on one Redis (cluster.py) a project lives on one master,
but every master answers its routes: a master that does not own it forwards
the request (method, path, query, body, `Authorization`, `Content-Type`) to
the owner's public URL and answers with the owner's answer, so an admin
action (start, pause, PATCH, DELETE, ban) answers when the owner applied it,
and a browser never meets a cross-origin redirect. A forwarded request
carries `X-Mlitb-Forwarded`, and is never forwarded again: a stale view of
who owns what answers 503 (retry) instead of bouncing between masters.
"""

from __future__ import annotations

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

FORWARDED = "x-mlitb-forwarded"
PASSED_HEADERS = ("authorization", "content-type", "accept")
TIMEOUT_S = 630.0  # the longest answer a master gives: a conformance run (up to 600 s)


class OwnedElsewhere(Exception):
    """Raised by a handler for a project another master owns; `forward` answers the request there."""

    def __init__(self, owner_url: str) -> None:
        super().__init__(owner_url)
        self.owner_url = owner_url


def moving(project_id: str) -> Response:
    return JSONResponse({"error": f"project {project_id!r} is moving between masters; retry in a few seconds"},
                        status_code=503, headers={"Retry-After": "2"})


async def forward(request: Request, exc: Exception) -> Response:
    """The exception handler: the same request on the owner, its answer here."""
    assert isinstance(exc, OwnedElsewhere)
    project_id = request.path_params.get("id", "?")
    if request.headers.get(FORWARDED):
        return moving(project_id)
    url = exc.owner_url.rstrip("/") + request.url.path + (f"?{request.url.query}" if request.url.query else "")
    headers = {name: request.headers[name] for name in PASSED_HEADERS if name in request.headers}
    headers[FORWARDED] = "1"
    try:
        async with httpx.AsyncClient(timeout=TIMEOUT_S) as client:
            answer = await client.request(request.method, url, content=await request.body(), headers=headers)
    except httpx.HTTPError:
        return moving(project_id)
    keep = {k: v for k, v in answer.headers.items()
            if k.lower() in ("content-type", "content-disposition", "content-security-policy", "retry-after",
                             "www-authenticate")}
    return Response(answer.content, status_code=answer.status_code, headers=keep)
