"""Ingest as a pure function: image formats, progress, and the limits not reached over HTTP."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from mlitb.data.archive import ZipInput
from mlitb.data.errors import DataError
from mlitb.data.ingest import IngestOptions, ingest
from mlitb.data.limits import Limits
from mlitb.data.shards import decode_shard
from tests.datazips import image_zip, make_zip, png


def encoded(image: Image.Image, fmt: str) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt)
    return out.getvalue()


def test_every_supported_format_and_mode_becomes_the_first_images_shape():
    colour = Image.new("RGBA", (6, 4), (10, 200, 30, 128))
    entries = {
        "x/a/1.png": encoded(colour, "PNG"),
        "x/b/2.JPG": encoded(Image.new("RGB", (12, 8), (250, 250, 250)), "JPEG"),
        "x/c/3.gif": encoded(Image.new("P", (3, 2)), "GIF"),
        "x/d/4.bmp": encoded(Image.new("L", (6, 4), 99), "BMP"),
        "x/e/5.webp": encoded(Image.new("RGB", (6, 4), (0, 0, 255)), "WEBP"),
        "x/e/notes.txt": b"skipped",
        "__MACOSX/x/a/._1.png": b"skipped",
    }
    dataset = ingest(ZipInput(io.BytesIO(make_zip(entries)), "mixed.zip"), None, IngestOptions(holdout=0), Limits())
    manifest = dataset.manifest
    assert manifest.shape == (4, 6, 3) and manifest.classes == ("a", "b", "c", "d", "e")
    shard = decode_shard(dataset.shards[0].blob)
    by_class = {manifest.classes[label]: pixels for label, pixels in zip(shard.labels, shard.pixels)}
    assert (by_class["a"] == [10, 200, 30]).all()
    assert (by_class["d"] == 99).all()
    assert (by_class["b"] > 240).all()


def test_progress_reaches_the_total_in_order():
    calls = []
    zipped = image_zip(per_class=200)[0]
    ingest(ZipInput(io.BytesIO(zipped), "p.zip"), None, IngestOptions(), Limits(), lambda d, t: calls.append((d, t)))
    assert calls[-1] == (600, 600)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls) and len(calls) > 1


def test_same_upload_same_dataset_id_and_shards():
    zipped = image_zip()[0]
    first, again = (ingest(ZipInput(io.BytesIO(zipped), "z.zip"), None, IngestOptions(), Limits()) for _ in range(2))
    assert first.manifest.id == again.manifest.id
    assert [s.id for s in first.shards] == [s.id for s in again.shards]


def test_dataset_too_large_when_decoded_is_refused():
    zipped = image_zip(per_class=4, height=10, width=10)[0]
    with pytest.raises(DataError, match="choose a smaller size"):
        ingest(ZipInput(io.BytesIO(zipped), "z.zip"), None, IngestOptions(), Limits(max_decoded_bytes=1000))


def test_too_many_entries_is_refused():
    zipped = image_zip(per_class=4)[0]
    with pytest.raises(DataError, match="12 entries; the limit is 10"):
        ingest(ZipInput(io.BytesIO(zipped), "z.zip"), None, IngestOptions(), Limits(max_entries=10))


def test_encrypted_entry_is_refused():
    zipped = bytearray(make_zip({"d/a/1.png": png(np.zeros((2, 2), np.uint8)), "d/b/1.png": b"secret"}))
    central = zipped.rindex(b"PK\x01\x02")  # the last entry's central directory record
    zipped[central + 8] |= 0x1  # general-purpose flag bit 0: encrypted
    with pytest.raises(DataError, match="encrypted") as caught:
        ingest(ZipInput(io.BytesIO(bytes(zipped)), "z.zip"), None, IngestOptions(), Limits())
    assert caught.value.file == "d/b/1.png"
