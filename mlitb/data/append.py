"""Append: new labelled examples for an existing dataset, decoded exactly like its ingest. Pure.

A dataset grows while projects train on it (DESIGN.md, the event loop's data
step): new examples become new train shards, appended to the manifest under
the same dataset id with the next `revision`. Existing shards are never
touched, so every id a client caches stays valid.

A label the dataset lacks is refused unless the caller asks for new classes
(`new_classes`, the API's `?new_classes=1`): then it becomes a class at the end
of `classes` (existing labels keep their indices, so existing shards stay
right) with no test examples yet, and every running project on the dataset
gains an output for it (mlitb/grow.py).
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


def append_zip(manifest: Manifest, upload: ZipInput, limits: Limits, new_classes: bool = False) -> IngestedDataset:
    """The zip's images (class folders, as at upload) appended to the train split."""
    with open_archive(upload) as archive:
        entries = image_entries(archive, upload, limits)
        manifest = _with_classes(manifest, [entry.label for entry in entries], upload.filename, limits, new_classes)
        index = {name: i for i, name in enumerate(manifest.classes)}
        check_decoded_size(len(entries), manifest.shape, limits, upload.filename)
        examples = decode_entries(archive, entries, index, manifest.shape, limits, ProgressCounter(len(entries), None))
    return _extend(manifest, examples)


def append_image(manifest: Manifest, image: LabelledImage, limits: Limits, new_classes: bool = False) -> IngestedDataset:
    """One image appended to the train split, as a shard of one example."""
    manifest = _with_classes(manifest, [image.label], image.filename, limits, new_classes)
    index = {name: i for i, name in enumerate(manifest.classes)}
    height, width, channels = manifest.shape
    opened = open_image(image.data, image.filename, limits.max_image_pixels)
    pixels = to_array(opened, image.filename, width, height, channels)[np.newaxis]
    return _extend(manifest, Examples(pixels, np.array([index[image.label]], dtype=np.int64)))


def _with_classes(manifest: Manifest, labels: list[str], filename: str, limits: Limits, new_classes: bool) -> Manifest:
    """The manifest with the labels it lacks added as classes (in order of first appearance), if allowed."""
    unknown = list(dict.fromkeys(label for label in labels if label not in manifest.classes))
    if not unknown:
        return manifest
    if not new_classes:
        raise DataError(
            f"dataset {manifest.id!r} has no class {', '.join(map(repr, unknown))}: use one of its classes: "
            f"{', '.join(manifest.classes)}; or add ?new_classes=1 to add it as a new class (every project "
            "on this dataset then gains an output for it)",
            filename,
        )
    for label in unknown:
        if not label.strip() or len(label) > 100:
            raise DataError(f"a class name must have 1..100 characters, got {label!r}", filename)
    total = len(manifest.classes) + len(unknown)
    if total > limits.max_classes:
        raise DataError(f"adding {', '.join(map(repr, unknown))} would give {manifest.id!r} {total} classes; "
                        f"this server allows {limits.max_classes}", filename)
    pad = (0,) * len(unknown)
    return replace(manifest, classes=manifest.classes + tuple(unknown),
                   train=replace(manifest.train, class_counts=manifest.train.class_counts + pad),
                   test=replace(manifest.test, class_counts=manifest.test.class_counts + pad))


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
