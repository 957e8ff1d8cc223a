"""Append: new labelled examples for an existing dataset, decoded exactly like its ingest. Pure.

A dataset grows while projects train on it (DESIGN.md, the event loop's data
step): new examples become new train shards, appended to the manifest under
the same dataset id with the next `revision`. Existing shards are never
touched, so every id a client caches stays valid.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime

import numpy as np

from mlitb.data.archive import ZipInput, image_entries, open_archive
from mlitb.data.errors import DataError
from mlitb.data.images import open_image, to_array
from mlitb.data.ingest import (
    Examples,
    IngestedDataset,
    ProgressCounter,
    check_decoded_size,
    cut_shards,
    decode_entries,
)
from mlitb.data.limits import Limits
from mlitb.data.manifest import Manifest, Split


@dataclass(frozen=True)
class LabelledImage:
    """One uploaded image (any format Pillow reads) and the class it shows."""

    data: bytes
    filename: str
    label: str


def append_zip(manifest: Manifest, upload: ZipInput, limits: Limits) -> IngestedDataset:
    """The zip's images (class folders, as at upload) appended to the train split."""
    with open_archive(upload) as archive:
        entries = image_entries(archive, upload, limits)
        index = _class_index(manifest, {entry.label for entry in entries}, upload.filename)
        check_decoded_size(len(entries), manifest.shape, limits, upload.filename)
        examples = decode_entries(archive, entries, index, manifest.shape, limits, ProgressCounter(len(entries), None))
    return _extend(manifest, examples)


def append_image(manifest: Manifest, image: LabelledImage, limits: Limits) -> IngestedDataset:
    """One image appended to the train split, as a shard of one example."""
    index = _class_index(manifest, {image.label}, image.filename)
    height, width, channels = manifest.shape
    opened = open_image(image.data, image.filename, limits.max_image_pixels)
    pixels = to_array(opened, image.filename, width, height, channels)[np.newaxis]
    return _extend(manifest, Examples(pixels, np.array([index[image.label]], dtype=np.int64)))


def _class_index(manifest: Manifest, labels: set[str], filename: str) -> dict[str, int]:
    """Class name -> label index; new examples must name classes the dataset already has."""
    unknown = sorted(labels - set(manifest.classes))
    if unknown:
        raise DataError(
            f"dataset {manifest.id!r} has no class {', '.join(map(repr, unknown))}: "
            f"use one of its classes: {', '.join(manifest.classes)}",
            filename,
        )
    return {name: i for i, name in enumerate(manifest.classes)}


def _extend(manifest: Manifest, examples: Examples) -> IngestedDataset:
    """The manifest with the examples' shards appended to train, revision + 1, and the new shards."""
    split, shards = cut_shards(examples, len(manifest.classes), manifest.shard_size)
    known = set(manifest.shard_ids)
    ids = [shard.id for shard in shards]
    repeated = sorted({i for i in ids if i in known or ids.count(i) > 1})
    if repeated:
        raise DataError(
            f"these examples are already in dataset {manifest.id!r} (shard {repeated[0]}): nothing was added",
            status=409,
        )
    train = Split(
        shards=manifest.train.shards + split.shards,
        class_counts=tuple(a + b for a, b in zip(manifest.train.class_counts, split.class_counts)),
    )
    grown = replace(
        manifest, train=train, revision=manifest.revision + 1, updated=datetime.now(UTC).isoformat(timespec="seconds")
    )
    return IngestedDataset(manifest=grown, shards=shards)
