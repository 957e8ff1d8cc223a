"""Upload options from a query string: parsed and checked before any byte of the body is read."""

from __future__ import annotations

import re
from collections.abc import Mapping

from mlitb.data.errors import DataError
from mlitb.data.ingest import DEFAULT_HOLDOUT, IngestOptions

KNOWN = frozenset({"name", "size", "channels", "holdout", "shard_size"})
MAX_SIDE = 4096
MAX_SHARD_SIZE = 100_000


def parse_size(text: str) -> tuple[int, int]:
    """'WxH' as (width, height), each 1..4096."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*", text)
    if not match or not all(1 <= int(side) <= MAX_SIDE for side in match.groups()):
        raise DataError(f"size {text!r} is not WIDTHxHEIGHT with sides 1..{MAX_SIDE}, e.g. size=28x28")
    return int(match[1]), int(match[2])


def parse_options(query: Mapping[str, str], default_shard_size: int) -> IngestOptions:
    """IngestOptions from `name`, `size`, `channels`, `holdout`, `shard_size`; DataError when wrong.

    `holdout` only matters without a test zip; the app refuses both together.
    """
    unknown = sorted(set(query) - KNOWN)
    if unknown:
        raise DataError(f"unknown upload parameter {', '.join(unknown)}: use {', '.join(sorted(KNOWN))}")
    name = query.get("name") or None
    if name is not None and not 1 <= len(name.strip()) <= 100:
        raise DataError("name must have 1..100 characters")
    channels = _int(query, "channels", None)
    if channels not in (None, 1, 3):
        raise DataError(f"channels={channels}: use 1 (greyscale) or 3 (RGB)")
    try:
        holdout = float(query.get("holdout", DEFAULT_HOLDOUT))
    except ValueError:
        raise DataError(f"holdout={query['holdout']!r} is not a number: use a fraction such as 0.1") from None
    if not 0.0 <= holdout < 1.0:
        raise DataError(f"holdout={holdout} must be at least 0 and below 1")
    shard_size = _int(query, "shard_size", default_shard_size)
    if not 1 <= shard_size <= MAX_SHARD_SIZE:
        raise DataError(f"shard_size={shard_size} must be 1..{MAX_SHARD_SIZE}")
    size = parse_size(query["size"]) if query.get("size") else None
    return IngestOptions(name=name and name.strip(), size=size, channels=channels, holdout=holdout, shard_size=shard_size)


def _int(query: Mapping[str, str], key: str, default: int | None) -> int | None:
    if key not in query:
        return default
    try:
        return int(query[key])
    except ValueError:
        raise DataError(f"{key}={query[key]!r} is not a whole number") from None
