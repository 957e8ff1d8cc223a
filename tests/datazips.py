"""Small image-dataset zips for the data server tests, built with zipfile and Pillow."""

from __future__ import annotations

import io
import stat
import struct
import zipfile
import zlib
from dataclasses import dataclass

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class Example:
    label: str
    pixels: np.ndarray  # uint8 (H, W, C), as the data server should decode it


def png(pixels: np.ndarray) -> bytes:
    """PNG bytes of uint8 (H, W) or (H, W, 3)."""
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def make_zip(entries: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return out.getvalue()


def image_zip(
    classes: tuple[str, ...] = ("cat", "dog", "eel"),
    per_class: int = 5,
    height: int = 5,
    width: int = 6,
    channels: int = 1,
    seed: int = 0,
    root: str = "pets",
) -> tuple[bytes, list[Example]]:
    """A zip `root/label/i.png` of random images and the examples it holds."""
    rng = np.random.default_rng(seed)
    entries, examples = {}, []
    for label in classes:
        for i in range(per_class):
            shape = (height, width) if channels == 1 else (height, width, 3)
            pixels = rng.integers(0, 256, size=shape, dtype=np.uint8)
            entries[f"{root}/{label}/{i:03d}.png"] = png(pixels)
            examples.append(Example(label, pixels.reshape(height, width, channels)))
    return make_zip(entries), examples


def symlink_zip() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("d/a/1.png", png(np.zeros((2, 2), np.uint8)))
        link = zipfile.ZipInfo("d/b/link.png")
        link.create_system = 3
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(link, "/etc/passwd")
    return out.getvalue()


def png_with_dimensions(width: int, height: int) -> bytes:
    """A 1×1 PNG whose header claims width × height (a decompression bomb's header)."""
    data = bytearray(png(np.zeros((1, 1), np.uint8)))
    ihdr = 8 + 8  # signature, then length + type of the IHDR chunk
    data[ihdr : ihdr + 8] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[ihdr - 4 : ihdr + 13]))
    data[ihdr + 13 : ihdr + 17] = struct.pack(">I", crc)
    return bytes(data)


def sorted_examples(pixels: np.ndarray, labels: list[str]) -> list[tuple[str, bytes]]:
    """Examples as a sorted list, to compare datasets regardless of shuffling."""
    return sorted((label, pixels[i].tobytes()) for i, label in enumerate(labels))


def mnist_digits_zip(split: str, digits: tuple[str, ...]) -> bytes:
    """The shipped MNIST `split` ("train" or "test") with only the images of `digits`, as an upload zip."""
    from mlitb.data.catalog import SHIPPED_DIR

    out = io.BytesIO()
    with zipfile.ZipFile(SHIPPED_DIR / f"mnist-{split}.zip") as source, zipfile.ZipFile(out, "w") as target:
        for name in source.namelist():
            parts = name.split("/")
            if len(parts) == 3 and parts[1] in digits and parts[2]:
                target.writestr(name, source.read(name))
    return out.getvalue()
