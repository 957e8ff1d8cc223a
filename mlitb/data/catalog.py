"""Datasets in the store: save, list, get, delete, and bootstrap the shipped MNIST.

Keys (docs/architecture.md): ``datasets/{id}/manifest`` and ``shards/{shard_id}``.
A dataset is saved in one `put_many` with its manifest last, so it becomes
visible only once every shard is in place. Shards are shared by content, so
deleting a dataset keeps shards another manifest still names.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from importlib.resources import files
from pathlib import Path

from mlitb.data.archive import ZipInput
from mlitb.data.errors import DataError
from mlitb.data.ingest import IngestedDataset, IngestOptions, Progress, ingest
from mlitb.data.limits import Limits
from mlitb.data.manifest import Manifest
from mlitb.store import Store, StoreError, check_key

SHIPPED_DIR = Path(str(files("mlitb") / "datasets"))  # package data: works from a wheel as from a checkout
log = logging.getLogger("mlitb.data")


def manifest_key(dataset_id: str) -> str:
    return f"datasets/{dataset_id}/manifest"


def shard_key(shard_id: str) -> str:
    return f"shards/{shard_id}"


def _valid(key: str) -> bool:
    try:
        check_key(key)
    except StoreError:
        return False
    return True


async def save_dataset(store: Store, dataset: IngestedDataset) -> Manifest:
    """Write every shard, then the manifest, as one atomic group."""
    items = {shard_key(shard.id): shard.blob for shard in dataset.shards}
    items[manifest_key(dataset.manifest.id)] = dataset.manifest.to_json()
    await store.put_many(items)
    return dataset.manifest


async def get_manifest_bytes(store: Store, dataset_id: str) -> bytes | None:
    """The manifest JSON as stored (served without re-encoding)."""
    key = manifest_key(dataset_id)
    return await store.get(key) if _valid(key) else None


async def get_manifest(store: Store, dataset_id: str) -> Manifest | None:
    raw = await get_manifest_bytes(store, dataset_id)
    return Manifest.from_json(raw) if raw is not None else None


async def list_datasets(store: Store) -> list[Manifest]:
    """Every visible dataset, in key order."""
    keys = [key for key in await store.keys("datasets/") if key.endswith("/manifest")]
    blobs = await asyncio.gather(*(store.get(key) for key in keys))
    return [Manifest.from_json(blob) for blob in blobs if blob is not None]


async def get_shard(store: Store, shard_id: str) -> bytes | None:
    key = shard_key(shard_id)
    return await store.get(key) if _valid(key) else None


async def delete_dataset(store: Store, dataset_id: str) -> bool:
    """Remove the manifest (the dataset vanishes at once), then shards no other dataset names."""
    manifest = await get_manifest(store, dataset_id)
    if manifest is None:
        return False
    await store.delete(manifest_key(dataset_id))
    still_named = {shard for other in await list_datasets(store) for shard in other.shard_ids}
    orphans = [shard_key(shard) for shard in manifest.shard_ids if shard not in still_named]
    await store.delete(*orphans)
    return True


async def ingest_and_save(
    store: Store,
    train: ZipInput,
    test: ZipInput | None,
    options: IngestOptions,
    limits: Limits,
) -> Manifest:
    """Ingest in a worker thread (the event loop keeps serving), then save; logs progress."""
    started = time.perf_counter()
    label = options.name or train.filename
    dataset = await asyncio.to_thread(ingest, train, test, options, limits, _progress_logger(label))
    manifest = await save_dataset(store, dataset)
    log.info(
        "dataset %s: %d train + %d test examples in %d shards, %.1f s",
        manifest.id, manifest.train.count, manifest.test.count, len(dataset.shards), time.perf_counter() - started,
    )
    return manifest


async def append_and_save(
    store: Store, dataset_id: str, grow: Callable[[Manifest], IngestedDataset], lock: asyncio.Lock
) -> Manifest:
    """Grow a dataset: `grow` (in a worker thread) gives the new manifest and shards; save them together.

    `lock` serialises the appends of one server, so no revision is lost. The
    manifest is read again just before writing: if another server appended
    (or someone deleted the dataset) meanwhile, nothing is written and the
    caller is told to retry (409), rather than overwrite their change.
    """
    async with lock:
        before = await get_manifest_bytes(store, dataset_id)
        if before is None:
            raise DataError(f"no dataset {dataset_id!r}: GET /datasets lists them", status=404)
        dataset = await asyncio.to_thread(grow, Manifest.from_json(before))
        if await get_manifest_bytes(store, dataset_id) != before:
            raise DataError(f"dataset {dataset_id!r} changed while the examples were decoded: send them again", status=409)
        manifest = await save_dataset(store, dataset)
    log.info("dataset %s revision %d: %d new train examples in %d shards",
             manifest.id, manifest.revision, sum(s.count for s in dataset.shards), len(dataset.shards))
    return manifest


def _progress_logger(label: str) -> Progress:
    """Log every tenth of the way, so a long ingest shows it is alive."""
    reported = 0

    def report(done: int, total: int) -> None:
        nonlocal reported
        tenth = done * 10 // total
        if tenth > reported:
            reported = tenth
            log.info("ingesting %s: %d/%d images", label, done, total)

    return report


async def ensure_shipped_datasets(store: Store, directory: Path = SHIPPED_DIR, limits: Limits = Limits()) -> list[Manifest]:
    """Ingest the shipped MNIST (name "mnist") if the store has no dataset; return every dataset.

    Idempotent: the same zips give the same dataset id, so two processes
    bootstrapping one store at once write the same dataset.
    """
    existing = await list_datasets(store)
    if existing:
        return existing
    train, test = directory / "mnist-train.zip", directory / "mnist-test.zip"
    if not (train.is_file() and test.is_file()):
        log.warning("no shipped dataset at %s: the store stays empty until someone uploads one", directory)
        return []
    manifest = await ingest_and_save(
        store, ZipInput(train, train.name), ZipInput(test, test.name), IngestOptions(name="mnist"), limits
    )
    return [manifest]
