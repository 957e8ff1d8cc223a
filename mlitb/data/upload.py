"""`mlitb data add ZIP`: upload a zipped image dataset to a data server, with a progress bar.

The zip streams from disk (never read whole into memory); the bar follows the
bytes sent, then the server ingests and answers with the manifest (the
upload is synchronous: see docs/data.md).
"""

from __future__ import annotations

import argparse
import io
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import httpx


@dataclass
class ProgressBar:
    """A one-line text bar on a terminal stream, redrawn only when the percentage moves."""

    total: int
    out: TextIO
    done: int = 0
    _shown: int = field(default=-1, repr=False)

    def update(self, count: int) -> None:
        self.done += count
        percent = 100 if self.total == 0 else min(100, self.done * 100 // self.total)
        if percent != self._shown:
            self._shown = percent
            filled = percent * 30 // 100
            mib = self.done / 2**20
            self.out.write(f"\rupload [{'#' * filled}{' ' * (30 - filled)}] {percent:3d}% {mib:.1f} MiB")
            if percent == 100:
                self.out.write("\ningesting on the server...\n")
            self.out.flush()


class _CountingFile(io.FileIO):
    """A file that tells the progress bar about every chunk httpx reads from it."""

    def __init__(self, path: str, bar: ProgressBar) -> None:
        super().__init__(path, "rb")
        self.bar = bar

    def read(self, size: int = -1) -> bytes:
        data = super().read(size)
        self.bar.update(len(data))
        return data


def run(args: argparse.Namespace) -> int:
    """Upload args.zip (and args.test_zip); print the new dataset's id on stdout."""
    token = os.environ.get("MLITB_ADMIN_TOKEN")
    if not token:
        print("mlitb data add: set MLITB_ADMIN_TOKEN to the server's admin token", file=sys.stderr)
        return 2
    paths = {"train": args.zip} | ({"test": args.test_zip} if args.test_zip else {})
    missing = [path for path in paths.values() if not Path(path).is_file()]
    if missing:
        print(f"mlitb data add: no such file: {', '.join(missing)}", file=sys.stderr)
        return 2
    params = {
        key: str(value)
        for key, value in (("name", args.name), ("size", args.size), ("channels", args.channels), ("holdout", args.holdout))
        if value is not None
    }
    bar = ProgressBar(total=sum(Path(path).stat().st_size for path in paths.values()), out=sys.stderr)
    files = {field_name: _CountingFile(path, bar) for field_name, path in paths.items()}
    try:
        with httpx.Client(timeout=httpx.Timeout(30.0, read=3600.0)) as client:
            response = client.post(
                f"{args.server.rstrip('/')}/datasets",
                params=params,
                files={name: (Path(f.name).name, f, "application/zip") for name, f in files.items()},
                headers={"Authorization": f"Bearer {token}"},
            )
    except httpx.HTTPError as exc:
        print(f"\nmlitb data add: cannot reach the data server at {args.server}: {exc}", file=sys.stderr)
        return 1
    finally:
        for handle in files.values():
            handle.close()
    return _report(response)


def _report(response: httpx.Response) -> int:
    try:
        body = response.json()
    except ValueError:
        body = {"error": response.text}
    if response.status_code != 201:
        where = f" (file: {body['file']})" if body.get("file") else ""
        print(f"mlitb data add: {response.status_code}: {body.get('error')}{where}", file=sys.stderr)
        return 1
    height, width, channels = body["shape"]
    train, test = body["splits"]["train"], body["splits"]["test"]
    print(
        f"dataset {body['name']!r}: {len(body['classes'])} classes, {width}x{height}x{channels}, "
        f"{train['count']} train + {test['count']} test examples in "
        f"{len(train['shards']) + len(test['shards'])} shards",
        file=sys.stderr,
    )
    print(body["id"])
    return 0
