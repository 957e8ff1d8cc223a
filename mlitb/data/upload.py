"""`mlitb data add ZIP` and `mlitb data append ID ZIP`: send zips or images to a data server, with a progress bar.

The files stream from disk (never read whole into memory); the bar follows the
bytes sent, then the server ingests and answers with the manifest (uploads
and appends are synchronous: see docs/data.md).
"""

from __future__ import annotations

import argparse
import io
import mimetypes
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO
from urllib.parse import quote

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
    """`mlitb data add`: upload args.zip (and args.test_zip); print the new dataset's id on stdout."""
    paths = {"train": args.zip} | ({"test": args.test_zip} if args.test_zip else {})
    params = {
        key: str(value)
        for key, value in (("name", args.name), ("size", args.size), ("channels", args.channels), ("holdout", args.holdout))
        if value is not None
    }
    response = post_files("mlitb data add", args.server, "/datasets", paths, params)
    if isinstance(response, int):
        return response
    body = _answer("mlitb data add", response, 201)
    if body is None:
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


def run_append(args: argparse.Namespace) -> int:
    """`mlitb data append`: add args.zip, or args.image labelled args.label, to a dataset's train split."""
    command = "mlitb data append"
    if (args.zip is None) == (args.image is None):
        print(f"{command}: give a ZIP or --image FILE --label CLASS (one of them)", file=sys.stderr)
        return 2
    if args.image is not None and not args.label:
        print(f"{command}: --image needs --label CLASS", file=sys.stderr)
        return 2
    if args.zip is not None and args.label is not None:
        print(f"{command}: --label goes with --image; a zip's class folders name its labels", file=sys.stderr)
        return 2
    paths, params = ({"zip": args.zip}, {}) if args.zip is not None else ({"image": args.image}, {"label": args.label})
    path = f"/datasets/{quote(args.dataset, safe='')}/examples"
    response = post_files(command, args.server, path, paths, params)
    if isinstance(response, int):
        return response
    body = _answer(command, response, 200)
    if body is None:
        return 1
    print(f"dataset {body['id']}: {body['splits']['train']['count']} train examples, revision {body['revision']}")
    return 0


def post_files(
    command: str, server: str, path: str, paths: dict[str, str], params: dict[str, str]
) -> httpx.Response | int:
    """POST the files (form field -> file path) as multipart to server + path with the admin token.

    The files stream from disk with a progress bar on stderr. The answer is the
    server's response whatever its status, or an exit code once the reason
    (no token, no such file, server unreachable) is printed.
    """
    token = os.environ.get("MLITB_ADMIN_TOKEN")
    if not token:
        print(f"{command}: set MLITB_ADMIN_TOKEN to the server's admin token", file=sys.stderr)
        return 2
    missing = [name for name in paths.values() if not Path(name).is_file()]
    if missing:
        print(f"{command}: no such file: {', '.join(missing)}", file=sys.stderr)
        return 2
    bar = ProgressBar(total=sum(Path(name).stat().st_size for name in paths.values()), out=sys.stderr)
    files = {field_name: _CountingFile(name, bar) for field_name, name in paths.items()}
    try:
        with httpx.Client(timeout=httpx.Timeout(30.0, read=3600.0)) as client:
            return client.post(
                f"{server.rstrip('/')}{path}",
                params=params,
                files={name: (Path(f.name).name, f, _content_type(name, f.name)) for name, f in files.items()},
                headers={"Authorization": f"Bearer {token}"},
            )
    except httpx.HTTPError as exc:
        print(f"\n{command}: cannot reach the data server at {server}: {exc}", file=sys.stderr)
        return 1
    finally:
        for handle in files.values():
            handle.close()


def _content_type(field_name: str, path: str) -> str:
    """Zip fields go as application/zip, an image as its extension says."""
    if field_name != "image":
        return "application/zip"
    return mimetypes.guess_type(path)[0] or "application/octet-stream"


def _answer(command: str, response: httpx.Response, expected: int) -> dict | None:
    """The response's JSON body if its status is the expected one; else None once the server's error is printed."""
    try:
        body = response.json()
    except ValueError:
        body = {"error": response.text}
    if response.status_code != expected:
        where = f" (file: {body['file']})" if body.get("file") else ""
        print(f"{command}: {response.status_code}: {body.get('error')}{where}", file=sys.stderr)
        return None
    return body
