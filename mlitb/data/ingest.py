"""Ingest: uploaded zips in, a manifest and encoded shards out. Pure: no store, no HTTP.

Each image is decoded once, converted to the dataset's channels and resized
to its size, then the examples of each split are shuffled with a fixed seed
(so a shard holds a mix of classes and the same upload always gives the same
shards) and cut into shards of `shard_size` examples.
"""

from __future__ import annotations

import zipfile
import zlib
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import PurePosixPath

import numpy as np

from mlitb.data.archive import ImageEntry, ZipInput, image_entries, open_archive
from mlitb.data.errors import DataError
from mlitb.data.images import channels_of, open_image, to_array
from mlitb.data.limits import Limits
from mlitb.data.manifest import Manifest, ShardRef, Split, dataset_id
from mlitb.data.shards import EncodedShard, encode_shard

Progress = Callable[[int, int], None]
"""Called with (images decoded, images in total) as ingest goes."""

DEFAULT_SHARD_SIZE = 250
DEFAULT_HOLDOUT = 0.1
_SEED = 0


@dataclass(frozen=True)
class IngestOptions:
    """What the uploader chose; None means "take it from the first image"."""

    name: str | None = None
    size: tuple[int, int] | None = None
    """(width, height)."""
    channels: int | None = None
    holdout: float = DEFAULT_HOLDOUT
    """Fraction of each class held out for testing when there is no test zip."""
    shard_size: int = DEFAULT_SHARD_SIZE


@dataclass(frozen=True)
class IngestedDataset:
    """A manifest and the shards it names, ready to be written to the store together."""

    manifest: Manifest
    shards: tuple[EncodedShard, ...]


@dataclass(frozen=True)
class Examples:
    """Decoded examples of one split: pixels uint8 (N, H, W, C), label indices (N,)."""

    pixels: np.ndarray
    labels: np.ndarray


def ingest(
    train: ZipInput,
    test: ZipInput | None,
    options: IngestOptions,
    limits: Limits,
    progress: Progress | None = None,
) -> IngestedDataset:
    """Decode, split, shard: the whole dataset, or a DataError naming what is wrong."""
    with open_archive(train) as train_zip, (open_archive(test) if test else nullcontext()) as test_zip:
        train_entries = image_entries(train_zip, train, limits)
        classes = tuple(sorted({entry.label for entry in train_entries}))
        _check_classes(classes, train, limits)
        test_entries = image_entries(test_zip, test, limits) if test is not None else []
        _check_test_classes(test_entries, classes, test)
        first = train_entries[0].info
        first_image = open_image(_read(train_zip, first), first.filename, limits.max_image_pixels)
        width, height = options.size or first_image.size
        channels = options.channels or channels_of(first_image)
        shape = (height, width, channels)
        check_decoded_size(len(train_entries) + len(test_entries), shape, limits, train.filename)
        index = {name: i for i, name in enumerate(classes)}
        counter = ProgressCounter(len(train_entries) + len(test_entries), progress)
        train_set = decode_entries(train_zip, train_entries, index, shape, limits, counter)
        test_set = decode_entries(test_zip, test_entries, index, shape, limits, counter) if test_zip is not None else None
    if test_set is None:
        train_set, test_set = _holdout(train_set, options.holdout, len(classes))
    name = options.name or PurePosixPath(train.filename).stem
    train_split, train_shards = cut_shards(train_set, len(classes), options.shard_size)
    test_split, test_shards = cut_shards(test_set, len(classes), options.shard_size)
    shards = train_shards + test_shards
    manifest = Manifest(
        id=dataset_id(name, classes, shape, [shard.id for shard in shards]),
        name=name,
        classes=classes,
        shape=shape,
        train=train_split,
        test=test_split,
        shard_size=options.shard_size,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    return IngestedDataset(manifest=manifest, shards=shards)


def check_decoded_size(count: int, shape: tuple[int, int, int], limits: Limits, filename: str) -> None:
    """Refuse before decoding when `count` examples of `shape` would not fit the decoded-size limit."""
    height, width, channels = shape
    decoded = count * height * width * channels
    if decoded > limits.max_decoded_bytes:
        raise DataError(
            f"{count} images of {width}x{height}x{channels} need {decoded} bytes, "
            f"over this server's limit of {limits.max_decoded_bytes}: choose a smaller size",
            filename,
        )


def _check_classes(classes: tuple[str, ...], upload: ZipInput, limits: Limits) -> None:
    if len(classes) < 2:
        raise DataError(
            f"{upload.filename} has a single class {classes[0]!r}: a classifier needs at least two class folders",
            upload.filename,
        )
    if len(classes) > limits.max_classes:
        raise DataError(
            f"{upload.filename} has {len(classes)} classes; this server allows {limits.max_classes}: "
            "check that the zip's folders are the classes",
            upload.filename,
        )


def _check_test_classes(entries: list[ImageEntry], classes: tuple[str, ...], test: ZipInput | None) -> None:
    unknown = sorted({entry.label for entry in entries} - set(classes))
    if unknown:
        raise DataError(
            f"the test zip has classes the training zip lacks: {', '.join(unknown)}: use the same class folders",
            test.filename if test else None,
        )


class ProgressCounter:
    """Reports progress every few hundred images, not on each one."""

    def __init__(self, total: int, progress: Progress | None) -> None:
        self.total, self.done, self.progress = total, 0, progress

    def step(self) -> None:
        self.done += 1
        if self.progress is not None and (self.done % 256 == 0 or self.done == self.total):
            self.progress(self.done, self.total)


def decode_entries(
    archive: zipfile.ZipFile,
    entries: list[ImageEntry],
    index: dict[str, int],
    shape: tuple[int, int, int],
    limits: Limits,
    counter: ProgressCounter,
) -> Examples:
    height, width, channels = shape
    pixels = np.empty((len(entries), height, width, channels), dtype=np.uint8)
    labels = np.empty(len(entries), dtype=np.int64)
    for i, entry in enumerate(entries):
        name = entry.info.filename
        image = open_image(_read(archive, entry.info), name, limits.max_image_pixels)
        pixels[i] = to_array(image, name, width, height, channels)
        labels[i] = index[entry.label]
        counter.step()
    return Examples(pixels, labels)


def _read(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    try:
        return archive.read(info)
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, NotImplementedError) as exc:
        raise DataError(f"entry {info.filename!r} is damaged ({exc}): zip the dataset again", info.filename) from exc


def _holdout(examples: Examples, fraction: float, num_classes: int) -> tuple[Examples, Examples]:
    """Split off `fraction` of each class (at least one example stays in training)."""
    rng = np.random.default_rng(_SEED)
    test_rows = []
    for label in range(num_classes):
        rows = rng.permutation(np.flatnonzero(examples.labels == label))
        take = min(round(fraction * len(rows)), len(rows) - 1)
        test_rows.append(rows[: max(take, 0)])
    is_test = np.zeros(len(examples.labels), dtype=bool)
    is_test[np.concatenate(test_rows)] = True
    return (
        Examples(examples.pixels[~is_test], examples.labels[~is_test]),
        Examples(examples.pixels[is_test], examples.labels[is_test]),
    )


def cut_shards(examples: Examples, num_classes: int, shard_size: int) -> tuple[Split, tuple[EncodedShard, ...]]:
    order = np.random.default_rng(_SEED).permutation(len(examples.labels))
    pixels, labels = examples.pixels[order], examples.labels[order]
    shards = tuple(
        encode_shard(pixels[start : start + shard_size], labels[start : start + shard_size], num_classes)
        for start in range(0, len(labels), shard_size)
    )
    split = Split(
        shards=tuple(ShardRef(id=s.id, count=s.count, bytes=len(s.blob)) for s in shards),
        class_counts=tuple(int(n) for n in np.bincount(labels, minlength=num_classes)),
    )
    return split, shards
