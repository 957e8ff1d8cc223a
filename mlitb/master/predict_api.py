"""`POST /api/projects/{id}/predict`: a batch of images in, the crowd's predictions out, in input order.

Thin: access (open within a per-address rate limit, or the admin token when the
project asks for it), a bounded body, decoding in a thread (predict_input.py),
then the project's prediction service splits the batch over its workers
(predict_service.py). docs/api.md describes the request and the answer.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncGenerator

import numpy as np
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from mlitb.http_api import require_admin
from mlitb.master.predict_input import TooMany, decode_files, decode_msgpack
from mlitb.master.predict_service import Outcome, PredictionFailed
from mlitb.master.rate_limit import RateLimiter
from mlitb.master.runtime import ProjectRuntime
from mlitb.master.settings import Settings
from mlitb.validate import FieldError

MSGPACK_TYPES = ("application/msgpack", "application/x-msgpack", "application/vnd.msgpack")


def rate_limiter(settings: Settings) -> RateLimiter:
    """The master's one limiter for this endpoint (kept in app.state)."""
    return RateLimiter(settings.predict_rate_per_minute, settings.predict_rate_burst)


async def predict(request: Request) -> Response:
    registry = request.app.state.registry
    settings: Settings = registry.settings
    rt: ProjectRuntime | None = registry.projects.get(request.path_params["id"])
    if rt is None:
        raise HTTPException(404, f"no project {request.path_params['id']!r}; GET /api/projects lists them")
    if rt.definition.predict_access == "admin":
        require_admin(request, settings.admin_token)
    else:
        address = request.client.host if request.client else "unknown"
        wait_s = request.app.state.predict_limiter.take(address, time.monotonic())
        if wait_s > 0:
            return JSONResponse({"error": f"too many prediction requests from {address}: at most "
                                          f"{settings.predict_rate_per_minute:g} a minute (bursts of "
                                          f"{settings.predict_rate_burst}); retry in {wait_s:.1f} s"},
                                status_code=429, headers={"Retry-After": str(max(1, round(wait_s)))})
    body = await _bounded_body(request, settings.predict_max_body_bytes)
    try:
        pixels = await _pixels(request, body, rt, settings)
    except TooMany as exc:
        return JSONResponse(exc.to_json(), status_code=413)
    iteration, params = rt.iteration, rt.params.copy()
    d = rt.definition
    try:
        outcome = await rt.predictions.predict(
            pixels, params, iteration, layers=d.layers, normalization=d.normalization,
            process=registry.predict_process, timeout_s=settings.predict_timeout_s,
            deadline_floor_ms=max(settings.predict_chunk_timeout_ms, 2.0 * d.iteration_ms))
    except PredictionFailed as exc:
        return JSONResponse({"error": f"prediction failed: {exc}"}, status_code=504)
    text = await asyncio.to_thread(answer_json, outcome, list(rt.manifest.classes))
    return Response(text, media_type="application/json")


def answer_json(outcome: Outcome, classes: list[str]) -> bytes:
    """The answer body: one prediction per image in input order, how the chunks went, the iteration."""
    labels = outcome.probabilities.argmax(axis=1)
    rows = outcome.probabilities.astype(np.float64).tolist()
    predictions = [{"class": classes[int(label)], "label": int(label), "probabilities": row}
                   for label, row in zip(labels, rows)]
    return json.dumps({"predictions": predictions, "chunks": outcome.chunks,
                       "parameters_iteration": outcome.iteration}, separators=(",", ":")).encode()


async def _bounded_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it is known to exceed `limit` (declared or streamed)."""
    too_large = HTTPException(413, f"the request body exceeds {limit} bytes; send fewer or smaller images per request")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


async def _pixels(request: Request, body: bytes, rt: ProjectRuntime, settings: Settings) -> np.ndarray:
    shape = tuple(rt.net.input_shape)
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind in MSGPACK_TYPES:
        return await asyncio.to_thread(decode_msgpack, body, shape, settings.predict_max_image_pixels,
                                       settings.predict_max_images)
    if kind == "multipart/form-data":
        files = await _files(request, body, settings.predict_max_images)
        return await asyncio.to_thread(decode_files, files, shape, settings.predict_max_image_pixels,
                                       settings.predict_max_images)
    raise HTTPException(415, f"send images as multipart/form-data files or as {MSGPACK_TYPES[0]} "
                             "{shape: [N, H, W, C], pixels: bin}; got Content-Type " + repr(kind or None))


async def _files(request: Request, body: bytes, max_images: int) -> list[tuple[str, bytes]]:
    async def once() -> AsyncGenerator[bytes, None]:
        yield body

    parser = MultiPartParser(request.headers, once(), max_files=max_images + 1, max_fields=100)
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise FieldError("files", f"{exc.message}; at most {max_images} files a request") from None
    files = []
    try:
        for _, value in form.multi_items():
            if isinstance(value, UploadFile):
                files.append((value.filename or f"file {len(files)}", await value.read()))
    finally:
        await form.close()
    return files
