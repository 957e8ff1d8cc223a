"""What the master's app factory wires against denial of service: its middleware and its caps.

Kept apart from app.py so the routes stay about the API: the body limits
(closure uploads keep their larger one), the security headers with a
Content-Security-Policy that lets the pages reach the data server, the
model-size limits and the cap on projects.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.middleware import Middleware

from mlitb.http_limits import BodyLimitMiddleware, BodyLimits
from mlitb.master.settings import Settings
from mlitb.model.limits import ModelLimits
from mlitb.security_headers import SecurityHeadersMiddleware, origin_of, page_policy

CLOSURE_UPLOAD = ("POST", r"/api/projects/from-closure", "MLITB_MAX_CLOSURE_BYTES")


def master_middleware(settings: Settings) -> list[Middleware]:
    """Outermost first: every answer gets the headers, refusals of oversized bodies included."""
    method, path, _setting = CLOSURE_UPLOAD
    limits = BodyLimits(settings.max_body_bytes, settings.http_read_timeout_s,
                        overrides=((method, path, settings.max_closure_bytes),))
    return [
        Middleware(SecurityHeadersMiddleware, policy=page_policy([origin_of(settings.data_url)])),
        Middleware(BodyLimitMiddleware, limits=limits),
    ]


def model_limits(settings: Settings) -> ModelLimits:
    return ModelLimits(max_layers=settings.max_layers, max_params=settings.max_params)


def check_project_cap(count: int, settings: Settings) -> None:
    """409 when the master already hosts `max_projects`: each one holds its parameters in memory."""
    if count >= settings.max_projects:
        raise HTTPException(409, f"this master hosts at most {settings.max_projects} projects (MLITB_MAX_PROJECTS); "
                                 "delete one first")
