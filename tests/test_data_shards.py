"""Shard format: round trip, content ids, and a zip layout a browser can walk by local headers."""

from __future__ import annotations

import io
import json
import struct
import subprocess
import zipfile
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlitb.data.shards import ShardError, decode_shard, encode_shard
from tests.helpers import REPO


def local_entries(blob: bytes) -> dict[str, bytes]:
    """Read a zip the way static/ does: local file headers in order, inflate-raw each entry."""
    entries, pos = {}, 0
    while blob[pos : pos + 4] == b"PK\x03\x04":
        _ver, flags, method, _t, _d, crc, csize, usize, nlen, xlen = struct.unpack("<HHHHHIIIHH", blob[pos + 4 : pos + 30])
        assert flags & 0x08 == 0, "data descriptor: sizes would not be in the local header"
        assert method in (0, 8)
        assert csize != 0xFFFFFFFF and usize != 0xFFFFFFFF, "zip64"
        name = blob[pos + 30 : pos + 30 + nlen].decode()
        start = pos + 30 + nlen + xlen
        raw = blob[start : start + csize]
        data = zlib.decompress(raw, -15) if method == 8 else raw
        assert len(data) == usize and zlib.crc32(data) == crc
        entries[name] = data
        pos = start + csize
    return entries


def random_shard(rng: np.random.Generator, count: int, shape: tuple[int, int, int], classes: int):
    pixels = rng.integers(0, 256, size=(count, *shape), dtype=np.uint8)
    labels = rng.integers(0, classes, size=count).astype(np.int64)
    return pixels, labels


@settings(max_examples=25, deadline=None)
@given(
    count=st.integers(1, 40),
    height=st.integers(1, 9),
    width=st.integers(1, 9),
    channels=st.sampled_from([1, 3]),
    classes=st.sampled_from([2, 10, 256, 257, 40000]),
    seed=st.integers(0, 2**32 - 1),
)
def test_round_trip_keeps_pixels_and_labels(count, height, width, channels, classes, seed):
    pixels, labels = random_shard(np.random.default_rng(seed), count, (height, width, channels), classes)
    shard = decode_shard(encode_shard(pixels, labels, classes).blob)
    assert shard.pixels.dtype == np.uint8 and shard.labels.dtype == np.int64
    np.testing.assert_array_equal(shard.pixels, pixels)
    np.testing.assert_array_equal(shard.labels, labels)


@pytest.mark.parametrize("classes, label_file, dtype", [(10, "labels.u8", "<u1"), (300, "labels.u16", "<u2")])
def test_browser_layout_header_pixels_labels(classes, label_file, dtype):
    pixels, labels = random_shard(np.random.default_rng(1), 7, (4, 3, 3), classes)
    entries = local_entries(encode_shard(pixels, labels, classes).blob)
    assert list(entries) == ["header.json", "pixels.u8", label_file]
    header = json.loads(entries["header.json"])
    assert header == {
        "format": "mlitb-shard", "version": 1, "count": 7, "height": 4, "width": 3, "channels": 3,
        "label_dtype": "uint8" if dtype == "<u1" else "uint16",
    }
    assert entries["pixels.u8"] == pixels.tobytes()  # example, row, column, channel interleaved
    np.testing.assert_array_equal(np.frombuffer(entries[label_file], dtype=dtype), labels)


def test_id_is_content_hash_and_bytes_are_deterministic():
    pixels, labels = random_shard(np.random.default_rng(2), 5, (3, 3, 1), 4)
    first, again = encode_shard(pixels, labels, 4), encode_shard(pixels.copy(), labels.copy(), 4)
    assert first.id == again.id and first.blob == again.blob and len(first.id) == 32
    changed = pixels.copy()
    changed[0, 0, 0, 0] ^= 1
    assert encode_shard(changed, labels, 4).id != first.id
    assert encode_shard(pixels, labels[::-1].copy(), 4).id != first.id


@pytest.mark.parametrize("blob", [b"", b"not a zip", b"PK\x03\x04 truncated"])
def test_decode_refuses_non_shards(blob):
    with pytest.raises(ShardError):
        decode_shard(blob)


def test_decode_refuses_sizes_that_disagree_with_the_header():
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("header.json", json.dumps(
            {"format": "mlitb-shard", "version": 1, "count": 2, "height": 2, "width": 2, "channels": 1, "label_dtype": "uint8"}
        ))
        archive.writestr("pixels.u8", bytes(7))
        archive.writestr("labels.u8", bytes(2))
    with pytest.raises(ShardError, match="sizes"):
        decode_shard(out.getvalue())


def test_the_browser_client_reads_a_python_shard(tmp_path):
    """static/js/shards.js (run in Node, same DecompressionStream as browsers) parses our bytes."""
    pixels, labels = random_shard(np.random.default_rng(3), 9, (5, 4, 3), 300)
    path = tmp_path / "shard.zip"
    path.write_bytes(encode_shard(pixels, labels, 300).blob)
    module = (REPO / "mlitb" / "static" / "js" / "shards.js").as_uri()
    script = (
        f"import {{ parseShard }} from {json.dumps(module)};"
        "import { readFileSync } from 'node:fs';"
        "const s = await parseShard(new Uint8Array(readFileSync(process.argv[1])));"
        "console.log(JSON.stringify({count: s.count, shape: [s.height, s.width, s.channels],"
        " pixels: Array.from(s.pixels), labels: Array.from(s.labels)}));"
    )
    result = subprocess.run(
        ["node", "--input-type=module", "-e", script, str(path)], capture_output=True, text=True, check=True
    )
    parsed = json.loads(result.stdout)
    assert parsed["count"] == 9 and parsed["shape"] == [5, 4, 3]
    assert parsed["pixels"] == pixels.ravel().tolist()
    assert parsed["labels"] == labels.tolist()
