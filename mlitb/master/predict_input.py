"""A prediction request's images as uint8 (N, H, W, C), prepared exactly like the project's training data.

Two forms come in: image files (any format Pillow reads) and, for programs,
msgpack `{shape: [N, H, W, C], pixels: bin uint8}`. Both go through the
ingest's own decode, channel conversion and bilinear resize
(mlitb.data.images), so a picture is seen the way the training examples were;
the normalisation is applied by whoever computes (worker or fallback), from
the project's definition. Pure: bytes in, an array or a FieldError naming what
was wrong out.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgpack
import numpy as np
from PIL import Image

from mlitb.data.errors import DataError
from mlitb.data.images import open_image, to_array
from mlitb.validate import FieldError


class TooMany(FieldError):
    """More images than a request may hold (413, not 400)."""


def check_count(count: int, max_images: int, field: str) -> None:
    if count < 1:
        raise FieldError(field, "holds no image; send at least one")
    if count > max_images:
        raise TooMany(field, f"holds {count} images; a request may hold at most {max_images}: split the batch")


def decode_files(files: Sequence[tuple[str, bytes]], shape: tuple[int, int, int], max_pixels: int,
                 max_images: int) -> np.ndarray:
    """Image files, each decoded, converted to the project's channels and resized to its size."""
    check_count(len(files), max_images, "files")
    height, width, depth = shape
    out = np.empty((len(files), height, width, depth), np.uint8)
    for i, (name, data) in enumerate(files):
        try:
            with open_image(data, name, max_pixels) as image:
                out[i] = to_array(image, name, width, height, depth)
        except DataError as exc:
            raise FieldError(f"files[{i}]", str(exc)) from None
    return out


def decode_msgpack(body: bytes, shape: tuple[int, int, int], max_pixels: int, max_images: int) -> np.ndarray:
    """`{shape: [N, H, W, C], pixels: bin}` of uint8 pixels; other sizes and channels are resized like files."""
    try:
        message = msgpack.unpackb(body, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises many types for garbage input
        raise FieldError("body", f"is not valid msgpack ({exc}); send {{shape: [N, H, W, C], pixels: bin}}") from exc
    if not isinstance(message, dict):
        raise FieldError("body", "must be a msgpack map {shape: [N, H, W, C], pixels: bin}")
    dims = message.get("shape")
    if (not isinstance(dims, list) or len(dims) != 4
            or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in dims)):
        raise FieldError("shape", f"must be [N, H, W, C], four positive integers, got {dims!r}")
    count, height, width, depth = dims
    check_count(count, max_images, "shape")
    if depth not in (1, 3):
        raise FieldError("shape", f"C must be 1 (grey) or 3 (RGB), got {depth}")
    if height * width > max_pixels:
        raise FieldError("shape", f"{height}×{width} images exceed the limit of {max_pixels} pixels each")
    pixels = message.get("pixels")
    if not isinstance(pixels, (bytes, bytearray)):
        raise FieldError("pixels", "must be msgpack bin holding the uint8 pixels, N×H×W×C bytes in that order")
    if len(pixels) != count * height * width * depth:
        raise FieldError("pixels", f"has {len(pixels)} bytes; shape {dims} needs {count * height * width * depth}")
    array = np.frombuffer(pixels, np.uint8).reshape(count, height, width, depth)
    if (height, width, depth) == tuple(shape):
        return array
    return _resized(array, shape)


def _resized(array: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    height, width, depth = shape
    out = np.empty((array.shape[0], height, width, depth), np.uint8)
    for i, pixels in enumerate(array):
        image = Image.fromarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels, "L" if pixels.shape[2] == 1 else "RGB")
        out[i] = to_array(image, f"image {i}", width, height, depth)
    return out
