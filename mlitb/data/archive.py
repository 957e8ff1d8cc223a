"""Open an uploaded zip and list its images, refusing anything unsafe before reading data.

Every check here looks only at the central directory (names, flags, declared
sizes), so a hostile zip is refused before a single entry is inflated.
"""

from __future__ import annotations

import re
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from mlitb.data.errors import DataError
from mlitb.data.limits import Limits

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp"})
_DRIVE = re.compile(r"^[A-Za-z]:")


@dataclass(frozen=True)
class ZipInput:
    """An uploaded zip: a path or seekable binary file, and the name to show in messages."""

    file: str | Path | BinaryIO
    filename: str


@dataclass(frozen=True)
class ImageEntry:
    """One image in a zip and its class (the name of the directory holding it)."""

    info: zipfile.ZipInfo
    label: str


def open_archive(upload: ZipInput) -> zipfile.ZipFile:
    """The upload as a ZipFile; a DataError that tells a non-zip from a damaged zip."""
    try:
        return zipfile.ZipFile(upload.file)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        if _starts_like_zip(upload.file):
            message = f"{upload.filename} is truncated or damaged ({exc}): upload the complete file again"
        else:
            message = f"{upload.filename} is not a zip file: upload a .zip whose folders are named after the classes"
        raise DataError(message, file=upload.filename) from exc


def _starts_like_zip(file: str | Path | BinaryIO) -> bool:
    if isinstance(file, (str, Path)):
        with open(file, "rb") as handle:
            return handle.read(4) == b"PK\x03\x04"
    file.seek(0)
    head = file.read(4)
    file.seek(0)
    return head == b"PK\x03\x04"


def image_entries(archive: zipfile.ZipFile, upload: ZipInput, limits: Limits) -> list[ImageEntry]:
    """Every image entry with its label, sorted by (label, path); unsafe zips raise DataError."""
    infos = archive.infolist()
    if len(infos) > limits.max_entries:
        raise DataError(f"{upload.filename} has {len(infos)} entries; the limit is {limits.max_entries}", upload.filename)
    total = 0
    images = []
    for info in infos:
        _check_entry(info, limits)
        total += info.file_size
        if total > limits.max_uncompressed_bytes:
            raise DataError(
                f"{upload.filename} would unpack to more than {limits.max_uncompressed_bytes} bytes "
                "(a zip bomb, or a dataset too large for this server): split it or ask for a higher limit",
                info.filename,
            )
        entry = _image_entry(info)
        if entry is not None:
            images.append(entry)
    if not images:
        raise DataError(
            f"{upload.filename} holds no images ({', '.join(sorted(IMAGE_EXTENSIONS))}): "
            "put them in folders named after their class, e.g. digits/7/001.png",
            upload.filename,
        )
    return sorted(images, key=lambda entry: (entry.label, entry.info.filename))


def _check_entry(info: zipfile.ZipInfo, limits: Limits) -> None:
    name = info.filename
    parts = re.split(r"[/\\]", name)
    if name.startswith(("/", "\\")) or _DRIVE.match(name) or ".." in parts:
        raise DataError(f"entry {name!r} points outside the zip (absolute path or '..'): rebuild the zip from its folder", name)
    if stat.S_ISLNK(info.external_attr >> 16):
        raise DataError(f"entry {name!r} is a symbolic link: zip the files themselves (zip without -y)", name)
    if info.flag_bits & 0x1:
        raise DataError(f"entry {name!r} is encrypted: upload a zip without a password", name)
    if info.file_size >= limits.ratio_min_bytes and info.file_size > limits.max_ratio * max(info.compress_size, 1):
        raise DataError(
            f"entry {name!r} expands {info.file_size / max(info.compress_size, 1):.0f}-fold "
            f"(limit {limits.max_ratio:.0f}): this looks like a zip bomb",
            name,
        )


def _image_entry(info: zipfile.ZipInfo) -> ImageEntry | None:
    parts = info.filename.split("/")
    if info.is_dir() or any(part.startswith(".") or part == "__MACOSX" for part in parts):
        return None
    if Path(parts[-1]).suffix.lower() not in IMAGE_EXTENSIONS:
        return None
    if len(parts) < 2:
        raise DataError(
            f"image {info.filename!r} is not in a class folder: put each image in a folder named after its class",
            info.filename,
        )
    return ImageEntry(info=info, label=parts[-2])
