"""The data server's HTTP face: a thin Starlette layer over catalog, ingest and shards.

Built by `create_data_app(store, admin_token, ...)` with no globals, so the
master can mount it in its own process and tests can run it on any store.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial

from starlette.applications import Starlette
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Message, Receive

from mlitb.data import catalog
from mlitb.data.append import LabelledImage, append_image, append_zip
from mlitb.data.archive import ZipInput
from mlitb.data.errors import DataError
from mlitb.data.hardening import data_middleware
from mlitb.data.ingest import DEFAULT_SHARD_SIZE
from mlitb.data.limits import Limits
from mlitb.data.options import parse_options
from mlitb.http_api import ERROR_HANDLERS, require_admin
from mlitb.store import Store

SHARD_CACHE_CONTROL = "public, max-age=31536000, immutable"
log = logging.getLogger("mlitb.data")


@dataclass
class DataState:
    """What the endpoints need, on `app.state.data`."""

    store: Store
    admin_token: str | None
    limits: Limits
    shard_size: int
    append_lock: asyncio.Lock = field(default_factory=asyncio.Lock)


def state_of(request: Request) -> DataState:
    return request.app.state.data


# ------------------------------------------------------------ endpoints


async def list_datasets(request: Request) -> Response:
    manifests = await catalog.list_datasets(state_of(request).store)
    return JSONResponse({"datasets": [manifest.to_dict() for manifest in manifests]})


async def get_dataset(request: Request) -> Response:
    raw = await catalog.get_manifest_bytes(state_of(request).store, request.path_params["dataset"])
    if raw is None:
        raise _no_dataset(request.path_params["dataset"])
    return Response(raw, media_type="application/json")


async def get_shard(request: Request) -> Response:
    store = state_of(request).store
    dataset_id, shard_id = request.path_params["dataset"], request.path_params["shard"]
    manifest = await catalog.get_manifest(store, dataset_id)
    if manifest is None:
        raise _no_dataset(dataset_id)
    if shard_id not in manifest.shard_ids:
        raise DataError(f"dataset {dataset_id!r} has no shard {shard_id!r}: see its manifest", status=404)
    headers = {"ETag": f'"{shard_id}"', "Cache-Control": SHARD_CACHE_CONTROL}
    if _etag_matches(request.headers.get("if-none-match"), shard_id):
        return Response(status_code=304, headers=headers)
    blob = await catalog.get_shard(store, shard_id)
    if blob is None:
        raise DataError(f"shard {shard_id!r} is missing from the store", status=404)
    return Response(blob, media_type="application/zip", headers=headers)


async def upload(request: Request) -> Response:
    state = state_of(request)
    require_admin(request, state.admin_token)
    limits = state.limits
    _check_upload_headers(request, limits, "with the zip in a file field named 'train'")
    options = parse_options(request.query_params, state.shard_size)
    form = await _read_form(request, limits, 2, "file fields 'train' and optionally 'test', and the options in the query string")
    try:
        train, test = form.get("train"), form.get("test")
        if not isinstance(train, UploadFile):
            raise DataError("the form has no file field named 'train': send the training zip in it")
        if isinstance(test, UploadFile) and "holdout" in request.query_params:
            raise DataError("give either a 'test' zip or holdout, not both")
        manifest = await catalog.ingest_and_save(
            state.store,
            ZipInput(train.file, train.filename or "train.zip"),
            ZipInput(test.file, test.filename or "test.zip") if isinstance(test, UploadFile) else None,
            options,
            limits,
        )
    finally:
        await form.close()
    return JSONResponse(manifest.to_dict(), status_code=201)


async def append_examples(request: Request) -> Response:
    state = state_of(request)
    require_admin(request, state.admin_token)
    limits = state.limits
    dataset_id = request.path_params["dataset"]
    _check_upload_headers(request, limits, "with a zip in a file field named 'zip', or an image in 'image' and ?label=")
    unknown = sorted(set(request.query_params) - {"label", "new_classes"})
    if unknown:
        raise DataError(f"unknown parameter {', '.join(unknown)}: the only ones are label (with an image) and "
                        "new_classes=1 (labels the dataset lacks become new classes)")
    label = request.query_params.get("label")
    new_classes = request.query_params.get("new_classes", "0")
    if new_classes not in ("0", "1"):
        raise DataError(f"new_classes must be 1 (add labels the dataset lacks as classes) or 0, got {new_classes!r}")
    form = await _read_form(request, limits, 1, "a zip in file field 'zip', or an image in file field 'image' with ?label=CLASS")
    try:
        archive, image = form.get("zip"), form.get("image")
        if isinstance(archive, UploadFile) == isinstance(image, UploadFile):
            raise DataError("send exactly one file field: 'zip' (class folders) or 'image' (with ?label=CLASS)")
        if isinstance(archive, UploadFile):
            if label is not None:
                raise DataError("label goes with an image; a zip's class folders name its labels")
            upload = ZipInput(archive.file, archive.filename or "examples.zip")
            grow = partial(append_zip, upload=upload, limits=limits, new_classes=new_classes == "1")
        else:
            assert isinstance(image, UploadFile)
            if not label:
                raise DataError("an image needs its class: add ?label=CLASS to the URL")
            picture = LabelledImage(await image.read(), image.filename or "image", label)
            grow = partial(append_image, image=picture, limits=limits, new_classes=new_classes == "1")
        manifest = await catalog.append_and_save(state.store, dataset_id, grow, state.append_lock)
    finally:
        await form.close()
    return JSONResponse(manifest.to_dict())


async def delete_dataset(request: Request) -> Response:
    state = state_of(request)
    require_admin(request, state.admin_token)
    dataset_id = request.path_params["dataset"]
    if not await catalog.delete_dataset(state.store, dataset_id):
        raise _no_dataset(dataset_id)
    return Response(status_code=204)


async def check_token(request: Request) -> Response:
    """204 for the admin token, 401 otherwise: lets a client check it before sending a long upload."""
    require_admin(request, state_of(request).admin_token)
    return Response(status_code=204)


async def healthz(request: Request) -> Response:
    await state_of(request).store.ping()
    return JSONResponse({"ok": True})


ROUTES = [
    Route("/datasets", list_datasets, methods=["GET"]),
    Route("/datasets", upload, methods=["POST"]),
    Route("/datasets/{dataset}", get_dataset, methods=["GET"]),
    Route("/datasets/{dataset}", delete_dataset, methods=["DELETE"]),
    Route("/datasets/{dataset}/examples", append_examples, methods=["POST"]),
    Route("/datasets/{dataset}/shards/{shard}", get_shard, methods=["GET"]),
    Route("/token", check_token, methods=["GET"]),
    Route("/healthz", healthz, methods=["GET"]),
]


def create_data_app(
    store: Store,
    admin_token: str | None,
    *,
    limits: Limits = Limits(),
    shard_size: int = DEFAULT_SHARD_SIZE,
    cors_origins: Sequence[str] = ("*",),
    bootstrap: bool = True,
) -> Starlette:
    """The data server on `store`. The caller owns the store (opens and closes it).

    `admin_token` guards POST (upload, append) and DELETE (None refuses them all). With
    `bootstrap`, startup ingests the shipped MNIST into an empty store
    (`catalog.ensure_shipped_datasets`); a master that mounts this app inside
    its own should call that function itself, since Starlette does not run a
    mounted app's lifespan.
    """

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if bootstrap:
            await catalog.ensure_shipped_datasets(store, limits=limits)
        yield

    middleware = [
        Middleware(
            CORSMiddleware,
            allow_origins=list(cors_origins),
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "If-None-Match"],
            expose_headers=["ETag"],
            max_age=3600,
        )
    ]
    middleware = data_middleware(middleware, limits)  # security headers outside, bounded bodies inside (hardening.py)
    app = Starlette(routes=ROUTES, middleware=middleware, exception_handlers={DataError: _data_error, **ERROR_HANDLERS},
                    lifespan=lifespan)
    app.state.data = DataState(store, admin_token, limits, shard_size)
    return app


def _etag_matches(header: str | None, shard_id: str) -> bool:
    if not header:
        return False
    tags = [tag.strip().removeprefix("W/").strip('"') for tag in header.split(",")]
    return "*" in tags or shard_id in tags


def _check_upload_headers(request: Request, limits: Limits, what: str) -> None:
    """Refuse by the headers alone: a declared body over the limit, or not multipart."""
    content_length = request.headers.get("content-length")
    if content_length and content_length.isdigit() and int(content_length) > limits.max_upload_bytes:
        raise _too_large(limits)
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise DataError(f"send a multipart/form-data body {what}")


async def _read_form(request: Request, limits: Limits, max_files: int, what: str) -> FormData:
    """The multipart body streamed to spooled temp files, its size counted; files only, no fields."""
    limited = Request(request.scope, _limit_body(request.receive, limits))
    try:
        return await limited.form(max_files=max_files, max_fields=0)
    except (MultiPartException, HTTPException) as exc:
        message = getattr(exc, "message", None) or getattr(exc, "detail", "")
        raise DataError(f"the upload is not a valid multipart form ({message}): send {what}") from exc


def _limit_body(receive: Receive, limits: Limits) -> Receive:
    """`receive` that refuses a body longer than the limit, however it is framed."""
    seen = 0

    async def limited() -> Message:
        nonlocal seen
        message = await receive()
        seen += len(message.get("body", b""))
        if seen > limits.max_upload_bytes:
            raise _too_large(limits)
        return message

    return limited


def _too_large(limits: Limits) -> DataError:
    return DataError(
        f"the upload is larger than this server's limit of {limits.max_upload_bytes} bytes: "
        "split the dataset or ask the operator to raise MLITB_MAX_UPLOAD_BYTES",
        status=413,
    )


def _no_dataset(dataset_id: str) -> DataError:
    return DataError(f"no dataset {dataset_id!r}: GET /datasets lists them", status=404)


async def _data_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, DataError)
    if exc.status >= 400 and request.method == "POST":
        log.info("upload refused (%d): %s", exc.status, exc.message)
    return JSONResponse({"error": exc.message, "file": exc.file}, status_code=exc.status)
