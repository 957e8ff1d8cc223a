"""What the data server tests share: small limits, uploading, reading a split back, and what a request left behind."""

from __future__ import annotations

import os

import httpx
import numpy as np

from mlitb.data.limits import Limits
from mlitb.data.shards import decode_shard
from mlitb.store import FileStore, Store
from tests.helpers import ADMIN

LIMITS = Limits(max_upload_bytes=300_000, max_uncompressed_bytes=200_000, max_classes=5)


async def upload(client, train: bytes, test: bytes | None = None, headers=ADMIN, **params) -> httpx.Response:
    files = {"train": ("train.zip", train, "application/zip")}
    if test is not None:
        files["test"] = ("test.zip", test, "application/zip")
    return await client.post("/datasets", files=files, params=params, headers=headers)


async def download_split(client, manifest: dict, split: str) -> tuple[np.ndarray, list[str]]:
    """Every shard of a split over HTTP, decoded: pixels (N,H,W,C) and label names."""
    pixels, labels = [], []
    for ref in manifest["splits"][split]["shards"]:
        response = await client.get(f"/datasets/{manifest['id']}/shards/{ref['id']}")
        assert response.status_code == 200 and len(response.content) == ref["bytes"]
        shard = decode_shard(response.content)
        assert len(shard.labels) == ref["count"]
        pixels.append(shard.pixels)
        labels += [manifest["classes"][i] for i in shard.labels]
    shape = (0, *manifest["shape"])
    return (np.concatenate(pixels) if pixels else np.empty(shape, np.uint8)), labels


def open_files() -> list[str]:
    """Files (not sockets or pipes) this process holds open: the server runs in it, so its upload temp files show."""
    targets = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            targets.append(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            continue
    return sorted(t for t in targets if t.startswith("/") and not t.startswith(("/dev/", "/proc/")))


async def trace(store: Store) -> tuple[list[str], list[str], list[str]]:
    """What a request could leave behind: store keys, files under a file store, open temp files."""
    files = []
    if isinstance(store, FileStore):
        files = sorted(os.path.join(d, f) for d, _, names in os.walk(store.root) for f in names)
    return await store.keys(), files, open_files()
