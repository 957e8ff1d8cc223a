"""`mlitb predict CLOSURE IMAGE... --top K`: classify image files with a research closure.

Images go through the same decode, channel conversion and bilinear resize
as uploaded training data (mlitb.data.images), then the closure's
normalisation, so a picture is seen the way the training examples were.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from mlitb.closure import Closure, ClosureError, load_closure
from mlitb.data.errors import DataError
from mlitb.data.images import to_array
from mlitb.model.classify import classify as classify_pixels


def read_closure(path: str) -> Closure:
    """The closure in file `path`; ClosureError names the file's wrong field."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ClosureError("(closure)", f"cannot read {path}: {exc.strerror}") from None
    return load_closure(text)


def image_pixels(path: str, shape: tuple[int, int, int]) -> np.ndarray:
    """uint8 (height, width, depth) pixels of the image file, converted and resized to `shape`."""
    height, width, depth = shape
    if depth not in (1, 3):
        raise DataError(f"the closure takes {depth}-channel input; images can only give 1 (grey) or 3 (RGB)", path)
    try:
        image = Image.open(path)
    except OSError as exc:
        raise DataError(f"{path!r} is not an image Pillow can read ({exc})", path) from None
    with image:
        return to_array(image, path, width, height, depth)


def top_classes(probs: np.ndarray, classes: list[str], k: int) -> list[tuple[str, float]]:
    """The k most probable classes of one example, most probable first (ties keep class order)."""
    order = np.argsort(-probs, kind="stable")[:k]
    return [(classes[i], float(probs[i])) for i in order]


def classify(closure: Closure, pixels: np.ndarray) -> np.ndarray:
    """Class probabilities (N, classes) of uint8 pixels (N, height, width, depth)."""
    norm = closure.normalization
    return classify_pixels(closure.net(), closure.params, pixels, norm.scale, norm.offset)


def run(args: argparse.Namespace) -> int:
    if getattr(args, "master", None):
        from mlitb.predict_remote import (
            run as run_remote,  # the master's crowd instead of a local closure
        )

        return run_remote(args)
    if not args.images:
        print("mlitb predict: give a closure and at least one image (or --master URL --project ID)", file=sys.stderr)
        return 2
    if args.top < 1:
        print("mlitb predict: --top must be at least 1", file=sys.stderr)
        return 2
    try:
        closure = read_closure(args.closure)
        pixels = np.stack([image_pixels(path, closure.input_shape) for path in args.images])
    except ClosureError as exc:
        print(f"mlitb predict: {args.closure}: {exc}", file=sys.stderr)
        return 1
    except DataError as exc:
        print(f"mlitb predict: {exc}", file=sys.stderr)
        return 1
    width = max(len(name) for name in closure.classes)
    for path, probs in zip(args.images, classify(closure, pixels)):
        print(path)
        for rank, (name, p) in enumerate(top_classes(probs, closure.classes, args.top), start=1):
            print(f"  {rank}. {name:<{width}}  {p:.6f}")
    return 0
