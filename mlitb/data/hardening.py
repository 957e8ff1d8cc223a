"""The data server's middleware: security headers on every answer and bounded request bodies.

Its answers are data (JSON, shard zips), so the policy lets nothing in them
run or be framed. Uploads keep their own large limit (`max_upload_bytes`,
enforced again while the form streams); every other request body is small.
"""

from __future__ import annotations

from starlette.middleware import Middleware

from mlitb.data.limits import Limits
from mlitb.http_limits import BodyLimitMiddleware, BodyLimits
from mlitb.security_headers import API_POLICY, SecurityHeadersMiddleware


def data_middleware(inner: list[Middleware], limits: Limits) -> list[Middleware]:
    """The headers outermost (so CORS preflights get them too), `inner` next, the body limit last."""
    uploads = (("POST", r"/datasets", limits.max_upload_bytes),
               ("POST", r"/datasets/[^/]+/examples", limits.max_upload_bytes))
    body = BodyLimits(limits.max_body_bytes, limits.http_read_timeout_s, overrides=uploads)
    return [Middleware(SecurityHeadersMiddleware, policy=API_POLICY), *inner, Middleware(BodyLimitMiddleware, limits=body)]
