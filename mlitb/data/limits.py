"""Upload limits, configurable per server, that keep a hostile zip from exhausting it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    """Every bound ingest enforces; the defaults suit datasets up to a few GiB decoded.

    Sizes come from the zip's central directory; Python's zipfile never
    inflates an entry past its declared size, so bounding the declared sizes
    bounds what ingest really reads.
    """

    max_upload_bytes: int = 1 << 30
    """Request body (all uploaded zips together)."""
    max_uncompressed_bytes: int = 4 << 30
    """Sum of the declared sizes of every entry of one zip."""
    max_ratio: float = 100.0
    """Uncompressed/compressed size of one entry, checked on entries of `ratio_min_bytes` or more."""
    ratio_min_bytes: int = 1 << 20
    max_entries: int = 1_000_000
    max_classes: int = 1000
    max_image_pixels: int = 25_000_000
    """Width × height of one image as its header declares it (decompression bombs)."""
    max_decoded_bytes: int = 2 << 30
    """N × H × W × C of the whole decoded dataset, held in memory while it is cut into shards."""
    # Requests that are not uploads (same variables as the master's).
    max_body_bytes: int = 1 << 20
    """Any other request body."""
    http_read_timeout_s: float = 10.0
    """Request headers, and each read of a body, must arrive within this."""
    http_idle_timeout_s: float = 5.0
    """An idle keep-alive connection is closed after this."""
