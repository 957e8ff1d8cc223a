"""Limits and defaults from the environment: `MLITB_<FIELD>` overrides a field.

The master's `Settings` and the data server's `Limits` are frozen dataclasses
with a default for every limit. A deployment changes one without code by
setting, say, `MLITB_MAX_FRAME_BYTES=16777216` or `MLITB_MAX_UPLOAD_BYTES=...`;
a value that does not parse stops the process with the variable's name.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

T = TypeVar("T")
PREFIX = "MLITB_"


class ConfigError(ValueError):
    """An environment variable holds a value its field cannot take."""


def from_env(cls: type[T], environ: Mapping[str, str], **given: Any) -> T:
    """`cls(**given)` with every numeric field not in `given` read from `MLITB_<FIELD>` when set."""
    values = dict(given)
    for field in dataclasses.fields(cls):
        name = PREFIX + field.name.upper()
        if field.name in given or name not in environ:
            continue
        kind = type(field.default)
        if kind not in (int, float):
            continue
        text = environ[name]
        try:
            value = kind(float(text)) if kind is float else int(text)
        except ValueError:
            raise ConfigError(f"{name}={text!r} is not a {'whole ' if kind is int else ''}number") from None
        if value < 0 or (value == 0 and field.name not in getattr(cls, "zero_means_off", ())):
            raise ConfigError(f"{name}={text!r} must be greater than 0")
        values[field.name] = value
    return cls(**values)


def documented_variables(cls: type) -> list[str]:
    """The environment variables `from_env` reads for `cls`, for docs and tests."""
    return [PREFIX + f.name.upper() for f in dataclasses.fields(cls) if type(f.default) in (int, float)]
