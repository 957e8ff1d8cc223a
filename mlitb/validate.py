"""Checks for the fields of documents that come from outside (API bodies, closures, frames).

Each check returns the value, typed, or raises `FieldError` naming the field
and what it must be; each boundary (the API, the closure loader, the frame
parser) turns that into its own error. One place for "what counts as an
integer": msgpack and JSON booleans are not numbers, and NaN is not a number.
"""

from __future__ import annotations

import math
from typing import Any


class FieldError(ValueError):
    """A field is wrong: `field` names it (a dotted path), `message` says what is allowed."""

    def __init__(self, field: str, message: str, *, text: str | None = None) -> None:
        super().__init__(text or f"{field}: {message}")
        self.field = field
        self.message = message

    def to_json(self) -> dict[str, Any]:
        return {"error": str(self), "field": self.field}


def is_number(value: Any) -> bool:
    """A finite int or float (not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def require_object(value: Any, field: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise FieldError(field, f"must be an object, got {type(value).__name__}")
    return value


def require_text(value: Any, field: str, *, max_len: int | None = None, empty: bool = False) -> str:
    """A string; non-empty (after stripping) unless `empty`; at most `max_len` characters."""
    if not isinstance(value, str) or (not empty and not value.strip()) or (max_len is not None and len(value) > max_len):
        kind = "string" if empty else "non-empty string"
        limit = f" of at most {max_len} characters" if max_len is not None else ""
        raise FieldError(field, f"must be a {kind}{limit}, got {value!r}")
    return value


def require_number(value: Any, field: str) -> float:
    if not is_number(value):
        raise FieldError(field, f"must be a finite number, got {value!r}")
    return float(value)


def require_int(value: Any, field: str, low: int | None = None, high: int | None = None) -> int:
    """An integer (not a bool) within [low, high] where given."""
    ok = isinstance(value, int) and not isinstance(value, bool)
    if ok and (low is None or value >= low) and (high is None or value <= high):
        return value
    if low is not None and high is not None:
        wanted = f"an integer from {low} to {high}"
    elif low is not None:
        wanted = f"an integer >= {low}"
    else:
        wanted = "an integer"
    raise FieldError(field, f"must be {wanted}, got {value!r}")


def require_bool(value: Any, field: str) -> bool:
    if not isinstance(value, bool):
        raise FieldError(field, f"must be true or false, got {value!r}")
    return value
