"""Shards: fixed groups of examples as small zips a browser can unzip natively.

A shard zip holds three entries, in this order, each deflated, with sizes and
CRC in the local file header (no data descriptors, no zip64), so a browser can
walk the local headers and inflate each entry with
`DecompressionStream('deflate-raw')`:

* ``header.json``: ``{"format": "mlitb-shard", "version": 1, "count": N,
  "height": H, "width": W, "channels": C, "label_dtype": "uint8"|"uint16"}``
* ``pixels.u8``: N*H*W*C bytes, example-major, rows, columns, channels
  interleaved (the model's input layout)
* ``labels.u8`` or ``labels.u16``: N class indices (uint16 little-endian)

A shard's id is the SHA-256 (first 32 hex digits) of its decoded content, so
the id names the examples, not a particular zlib's output, and any server
that holds the same examples serves them under the same id and ETag.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from dataclasses import dataclass

import numpy as np

FORMAT = "mlitb-shard"
VERSION = 1
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)
_LABEL_FILES = {"uint8": "labels.u8", "uint16": "labels.u16"}


class ShardError(ValueError):
    """A blob is not a well-formed shard."""


@dataclass(frozen=True)
class Shard:
    """Decoded examples: `pixels` uint8 (N, H, W, C), `labels` int64 (N,)."""

    pixels: np.ndarray
    labels: np.ndarray


@dataclass(frozen=True)
class EncodedShard:
    """A shard ready for the store: its content id, zip bytes and example count."""

    id: str
    blob: bytes
    count: int


def label_dtype(num_classes: int) -> str:
    """The narrowest label type that holds every class index."""
    if num_classes <= 256:
        return "uint8"
    if num_classes <= 65536:
        return "uint16"
    raise ValueError(f"{num_classes} classes do not fit in a uint16 label")


def encode_shard(pixels: np.ndarray, labels: np.ndarray, num_classes: int) -> EncodedShard:
    """Zip `pixels` uint8 (N,H,W,C) and `labels` (N,) into a shard (deterministic bytes)."""
    if pixels.dtype != np.uint8 or pixels.ndim != 4:
        raise ValueError("pixels must be uint8 (N, H, W, C)")
    count, height, width, channels = pixels.shape
    if labels.shape != (count,):
        raise ValueError(f"labels must have shape ({count},), not {labels.shape}")
    dtype = label_dtype(num_classes)
    header = json.dumps(
        {
            "format": FORMAT,
            "version": VERSION,
            "count": count,
            "height": height,
            "width": width,
            "channels": channels,
            "label_dtype": dtype,
        },
        separators=(",", ":"),
    ).encode()
    pixel_bytes = np.ascontiguousarray(pixels).tobytes()
    label_bytes = labels.astype("<u2" if dtype == "uint16" else np.uint8).tobytes()
    entries = (("header.json", header), ("pixels.u8", pixel_bytes), (_LABEL_FILES[dtype], label_bytes))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in entries:
            info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, data)
    return EncodedShard(id=_content_hash(entries), blob=out.getvalue(), count=count)


def _content_hash(entries: tuple[tuple[str, bytes], ...] | list[tuple[str, bytes]]) -> str:
    digest = hashlib.sha256()
    for name, data in entries:
        digest.update(name.encode() + b"\0" + len(data).to_bytes(8, "little") + data)
    return digest.hexdigest()[:32]


def content_id(blob: bytes) -> str:
    """The id a shard zip's content hashes to (what `encode_shard` named it), to check a download against
    the id it was asked for; ShardError if it is not a shard."""
    decode_shard(blob)  # well-formed first: the hash alone would accept any zip with these entry names
    try:
        with zipfile.ZipFile(io.BytesIO(blob)) as archive:
            names = [info.filename for info in archive.infolist()]
            return _content_hash([(name, archive.read(name)) for name in names])
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise ShardError(f"not a shard zip: {exc}") from exc


def decode_shard(blob: bytes) -> Shard:
    """The examples in a shard zip; ShardError if it is not one."""
    try:
        with zipfile.ZipFile(io.BytesIO(blob)) as archive:
            header = json.loads(archive.read("header.json"))
            label_file = _LABEL_FILES.get(header.get("label_dtype"))
            if header.get("format") != FORMAT or header.get("version") != VERSION or label_file is None:
                raise ShardError(f"not a version {VERSION} {FORMAT} header: {header}")
            shape = tuple(int(header[k]) for k in ("count", "height", "width", "channels"))
            pixels = np.frombuffer(archive.read("pixels.u8"), dtype=np.uint8)
            labels = np.frombuffer(archive.read(label_file), dtype="<u2" if label_file.endswith("u16") else np.uint8)
    except ShardError:
        raise
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError, AttributeError, TypeError, ValueError) as exc:
        raise ShardError(f"not a shard zip: {exc}") from exc
    if pixels.size != np.prod(shape) or labels.size != shape[0]:
        raise ShardError("shard entries do not match the sizes in header.json")
    return Shard(pixels=pixels.reshape(shape), labels=labels.astype(np.int64))
