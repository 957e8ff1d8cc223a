"""The one error type of the data server: what went wrong, which file, which HTTP status.

Ingest and shard code raise `DataError` with a message written for the person
who uploaded the data; the app turns it into a 4xx JSON answer unchanged.
"""

from __future__ import annotations


class DataError(Exception):
    """Bad input: `message` says what was wrong and what to do, `file` names the zip entry."""

    def __init__(self, message: str, file: str | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.file = file
        self.status = status
