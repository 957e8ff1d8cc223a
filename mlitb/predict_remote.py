"""`mlitb predict --master URL --project ID IMAGE|DIR...`: predictions from a master's crowd of workers.

The client side of `POST /api/projects/{id}/predict`: image files (a
directory stands for the image files in it, sorted by path) are sent as they
are, in batches, and the master resizes and normalises them like the
project's training data; the answers come back in input order. A progress bar
is drawn on a terminal; `--json` prints one JSON document for programs. A
429 (the per-address rate limit) is waited out as the master asks.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
MAX_RETRIES = 20


class RemoteError(Exception):
    """The master refused the request; the message is its own."""


def image_paths(paths: list[str]) -> list[Path]:
    """Files as given; a directory's image files (by suffix), recursively, sorted."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES))
        elif path.is_file():
            found.append(path)
        else:
            raise RemoteError(f"{raw}: no such file or directory")
    if not found:
        raise RemoteError("no image files to predict")
    return found


def batches(items: list[Path], size: int) -> Iterator[list[Path]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def predict_files(client: httpx.Client, project: str, paths: list[Path], batch: int,
                  progress: Callable[[int, int], None] = lambda done, total: None) -> dict[str, Any]:
    """Every file's prediction in order, plus the chunks and iterations of the requests that made them."""
    predictions: list[dict[str, Any]] = []
    chunks: list[dict[str, Any]] = []
    iterations: set[int] = set()
    for group in batches(paths, batch):
        answer = _post(client, project, group)
        for path, prediction in zip(group, answer["predictions"]):
            predictions.append({"path": str(path), **prediction})
        chunks.extend(answer["chunks"])
        iterations.add(answer["parameters_iteration"])
        progress(len(predictions), len(paths))
    return {"predictions": predictions, "chunks": chunks, "parameters_iterations": sorted(iterations)}


def _post(client: httpx.Client, project: str, group: list[Path]) -> dict[str, Any]:
    files = [("files", (path.name, path.read_bytes())) for path in group]
    for _ in range(MAX_RETRIES):
        response = client.post(f"/api/projects/{project}/predict", files=files)
        if response.status_code == 429:
            time.sleep(float(response.headers.get("retry-after", "1")))
            continue
        if response.status_code != 200:
            try:
                message = response.json().get("error", response.text)
            except ValueError:
                message = response.text
            raise RemoteError(f"the master answered {response.status_code}: {message}")
        return response.json()
    raise RemoteError(f"the master kept refusing ({MAX_RETRIES} times): too many requests from this address")


class ProgressBar:
    """`[#####.....] 512/1000 images` on stderr when it is a terminal; nothing otherwise."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        width = 30
        filled = width * done // max(total, 1)
        sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} images")
        if done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()


def run(args: argparse.Namespace) -> int:
    """`mlitb predict --master URL --project ID ...`; the positional closure slot holds the first image."""
    if not args.project:
        print("mlitb predict: --master needs --project ID (GET /api/projects lists them)", file=sys.stderr)
        return 2
    raw = [args.closure, *args.images] if args.closure else list(args.images)
    token = args.token or os.environ.get("MLITB_ADMIN_TOKEN")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        paths = image_paths(raw)
        with httpx.Client(base_url=args.master.rstrip("/"), headers=headers, timeout=300) as client:
            result = predict_files(client, args.project, paths, args.batch, ProgressBar(sys.stderr.isatty()))
    except (RemoteError, httpx.HTTPError, OSError) as exc:
        print(f"mlitb predict: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result))
        return 0
    for prediction in result["predictions"]:
        ranked = sorted(enumerate(prediction["probabilities"]), key=lambda item: -item[1])[:args.top]
        print(prediction["path"])
        for rank, (label, p) in enumerate(ranked, start=1):
            name = prediction["class"] if label == prediction["label"] else f"#{label}"
            print(f"  {rank}. {name}  {p:.6f}")
    return 0
