"""Decode one image with Pillow into the dataset's shape, refusing decompression bombs.

The image header is read first (Pillow opens lazily), so huge declared
dimensions are refused before any pixel memory is allocated.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from mlitb.data.errors import DataError

_GREY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F", "La"})


def open_image(data: bytes, name: str, max_pixels: int) -> Image.Image:
    """The image in `data`, header checked, pixels not yet decoded."""
    try:
        image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise _bomb(name, max_pixels) from exc
    except Exception as exc:  # Pillow raises many types for garbage input
        raise DataError(f"{name!r} is not an image Pillow can read ({exc}): remove or re-save it", name) from exc
    width, height = image.size
    if width * height > max_pixels:
        raise _bomb(name, max_pixels, f"{width}×{height}")
    return image


def _bomb(name: str, max_pixels: int, dims: str = "huge") -> DataError:
    return DataError(
        f"{name!r} declares {dims} dimensions, over the limit of {max_pixels} pixels "
        "(a decompression bomb, or a photo far larger than a training input): shrink it",
        name,
    )


def channels_of(image: Image.Image) -> int:
    """1 for greyscale modes, 3 otherwise (colour, palette, alpha dropped)."""
    return 1 if image.mode in _GREY_MODES else 3


def to_array(image: Image.Image, name: str, width: int, height: int, channels: int) -> np.ndarray:
    """The image as uint8 (height, width, channels): converted, resized if needed, decoded once."""
    mode = "L" if channels == 1 else "RGB"
    try:
        if image.size != (width, height):
            image.draft(mode, (width, height))
        if image.mode != mode:
            image = image.convert(mode)
        if image.size != (width, height):
            image = image.resize((width, height), Image.Resampling.BILINEAR)
        return np.asarray(image, dtype=np.uint8).reshape(height, width, channels)
    except Exception as exc:
        raise DataError(f"{name!r} could not be decoded ({exc}): the file is damaged; remove or re-save it", name) from exc
