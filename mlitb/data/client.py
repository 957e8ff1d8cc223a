"""The data server from Python: list, upload (`mlitb data add`), append and delete datasets.

A client tool, not part of the server: the CLI finds the data server through
the master (`/api/config`'s `data_url`) unless `--server` names it. Files
stream from disk (never read whole into memory) with a progress bar on a
terminal only; before the body is sent the token is tried on `GET /token`,
so a wrong token costs a request, not the whole upload. Every error
names the data server that answered (or did not).
"""

from __future__ import annotations

import io
import mimetypes
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import quote

import httpx

from mlitb.api_client import ApiError, check_base_url, error_text


@dataclass
class ProgressBar:
    """A one-line text bar on a terminal stream, redrawn only when the percentage moves.

    Off a terminal (a log file, a pipe) carriage returns would be garbage, so
    it writes one line when the upload starts and one when it is sent.
    """

    total: int
    out: TextIO
    done: int = 0
    _shown: int = field(default=-1, repr=False)

    def __post_init__(self) -> None:
        self.live = bool(getattr(self.out, "isatty", lambda: False)())
        if not self.live:
            self.out.write(f"uploading {self.total / 2**20:.1f} MiB...\n")
            self.out.flush()

    def update(self, count: int) -> None:
        self.done += count
        percent = 100 if self.total == 0 else min(100, self.done * 100 // self.total)
        if percent == self._shown:
            return
        self._shown = percent
        if self.live:
            filled = percent * 30 // 100
            self.out.write(f"\rupload [{'#' * filled}{' ' * (30 - filled)}] {percent:3d}% {self.done / 2**20:.1f} MiB")
            if percent == 100:
                self.out.write("\n")
        if percent == 100:
            self.out.write("sent; ingesting on the server...\n")
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


@dataclass
class DataClient:
    """One data server (`url`, e.g. http://host:8000/data in the one-port setup) and the admin token."""

    url: str
    token: str | None = None

    def __post_init__(self) -> None:
        self.url = check_base_url(self.url, "the data server URL")

    def list(self) -> list[dict[str, Any]]:
        return self._json(self._call("GET", "/datasets"))["datasets"]

    def delete(self, dataset: str) -> None:
        self._call("DELETE", f"/datasets/{quote(dataset, safe='')}", admin=True)

    def add(self, paths: dict[str, str], params: dict[str, str], progress: TextIO | None = None) -> dict[str, Any]:
        """Upload the zips (form field -> path: 'train', optionally 'test'); the new manifest."""
        return self._post_files("/datasets", paths, params, progress)

    def append(self, dataset: str, paths: dict[str, str], params: dict[str, str],
               progress: TextIO | None = None) -> dict[str, Any]:
        """Add a zip ('zip') or one image ('image' with params label) to a dataset's train split."""
        return self._post_files(f"/datasets/{quote(dataset, safe='')}/examples", paths, params, progress)

    def check_token(self) -> None:
        """Raise ApiError naming the server unless it accepts the admin token (`GET /token`)."""
        self._call("GET", "/token", admin=True)

    def _post_files(self, path: str, paths: dict[str, str], params: dict[str, str], progress: TextIO | None) -> dict[str, Any]:
        missing = [name for name in paths.values() if not Path(name).is_file()]
        if missing:
            raise ApiError(f"no such file: {', '.join(missing)}")
        self.check_token()
        bar = ProgressBar(total=sum(Path(name).stat().st_size for name in paths.values()), out=progress or sys.stderr)
        files = {field_name: _CountingFile(name, bar) for field_name, name in paths.items()}
        try:
            parts = {name: (Path(f.name).name, f, _content_type(name, f.name)) for name, f in files.items()}
            return self._json(self._call("POST", path, admin=True, params=params, files=parts,
                                         timeout=httpx.Timeout(30.0, read=3600.0)))
        finally:
            for handle in files.values():
                handle.close()

    def _call(self, method: str, path: str, admin: bool = False, **kwargs: Any) -> httpx.Response:
        headers = {}
        if admin:
            if not self.token:
                raise ApiError("this needs the admin token: pass --token, set MLITB_ADMIN_TOKEN, or run on the "
                               "machine of `mlitb serve` (it writes DATA_DIR/admin-token)")
            headers["Authorization"] = f"Bearer {self.token}"
        timeout = kwargs.pop("timeout", 30.0)
        try:
            with httpx.Client(timeout=timeout) as http:
                response = http.request(method, f"{self.url}{path}", headers=headers, **kwargs)
        except httpx.ConnectError:
            raise ApiError(f"nothing answers at the data server {self.url} (connection refused): is it running, "
                           "and is the URL right?") from None
        except httpx.HTTPError as exc:
            raise ApiError(f"the data server at {self.url} did not answer {method} {path}: {exc}") from None
        if response.status_code in (401, 403):
            raise ApiError(f"the data server at {self.url} refused the admin token ({error_text(response)}): use the "
                           "one `mlitb serve` printed (--token, MLITB_ADMIN_TOKEN or DATA_DIR/admin-token)", 401)
        if response.status_code >= 400:
            raise ApiError(f"the data server at {self.url} answered {response.status_code}: {error_text(response)}",
                           response.status_code)
        return response

    def _json(self, response: httpx.Response) -> Any:
        try:
            return response.json()
        except ValueError:
            raise ApiError(f"{self.url} answered something that is not JSON: is it an mlitb data server?") from None


def _content_type(field_name: str, path: str) -> str:
    """Zip fields go as application/zip, an image as its extension says."""
    if field_name != "image":
        return "application/zip"
    return mimetypes.guess_type(path)[0] or "application/octet-stream"


def describe(manifest: dict[str, Any]) -> str:
    """One line about a dataset: name, classes, image size, example and shard counts."""
    height, width, channels = manifest["shape"]
    train, test = manifest["splits"]["train"], manifest["splits"]["test"]
    return (f"dataset {manifest['name']!r}: {len(manifest['classes'])} classes, {width}x{height}x{channels}, "
            f"{train['count']} train + {test['count']} test examples in "
            f"{len(train['shards']) + len(test['shards'])} shards")
