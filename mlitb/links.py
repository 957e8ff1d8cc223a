"""A project's link settings and the per-client choice of codecs (docs/protocol.md, "Codecs").

The researcher says which codecs a project allows, in order of preference,
and how many local steps its trainers take; each client says in `hello` what
it implements; the master picks per client and tells it in `welcome.codecs`.
Nothing here does I/O: the master's runtime calls `negotiate` at join, the
Python worker builds its offer with `OFFER` and reads the answer with
`WelcomeCodecs.parse`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mlitb.codecs import (
    DEFAULT_FULL_EVERY,
    DEFAULT_TOPK_RATIO,
    PARAM_CODECS,
    RESULT_CODECS,
    pick,
)
from mlitb.validate import FieldError, require_int, require_number

OFFER = {"results": list(RESULT_CODECS), "params": list(PARAM_CODECS)}
MAX_LOCAL_STEPS = 256


@dataclass(frozen=True)
class LinkSettings:
    """What a project allows: codecs in preference order, top-k share, full-frame period, local steps."""

    result_codecs: tuple[str, ...] = ("f32",)
    param_codecs: tuple[str, ...] = ("f32",)
    topk_ratio: float = DEFAULT_TOPK_RATIO
    full_every: int = DEFAULT_FULL_EVERY
    local_steps: int = 1
    local_learning_rate: float = 0.05

    @classmethod
    def parse(cls, doc: Mapping[str, Any] | None) -> LinkSettings:
        """From a project definition's fields (absent ones take defaults); FieldError names a bad one."""
        doc = doc or {}
        return cls(
            result_codecs=_codecs(doc.get("result_codecs", ["f32"]), "result_codecs", RESULT_CODECS),
            param_codecs=_codecs(doc.get("param_codecs", ["f32"]), "param_codecs", PARAM_CODECS),
            topk_ratio=_ratio(doc.get("topk_ratio", DEFAULT_TOPK_RATIO)),
            full_every=require_int(doc.get("full_every", DEFAULT_FULL_EVERY), "full_every", 1, 10_000),
            local_steps=require_int(doc.get("local_steps", 1), "local_steps", 1, MAX_LOCAL_STEPS),
            local_learning_rate=_positive(doc.get("local_learning_rate", 0.05), "local_learning_rate"),
        )

    def to_json(self) -> dict[str, Any]:
        return {"result_codecs": list(self.result_codecs), "param_codecs": list(self.param_codecs),
                "topk_ratio": self.topk_ratio, "full_every": self.full_every, "local_steps": self.local_steps,
                "local_learning_rate": self.local_learning_rate}


@dataclass(frozen=True)
class WelcomeCodecs:
    """What one client uses: the `welcome.codecs` map."""

    result: str = "f32"
    params: str = "f32"
    topk_ratio: float = DEFAULT_TOPK_RATIO
    full_every: int = DEFAULT_FULL_EVERY
    local_steps: int = 1
    local_learning_rate: float = 0.05

    def to_json(self) -> dict[str, Any]:
        return {"result": self.result, "params": self.params, "topk_ratio": self.topk_ratio,
                "full_every": self.full_every, "local_steps": self.local_steps,
                "local_learning_rate": self.local_learning_rate}

    @classmethod
    def parse(cls, doc: Mapping[str, Any] | None) -> WelcomeCodecs:
        """A worker reading `welcome.codecs` (absent: float32 gradients, as before codecs existed)."""
        if not doc:
            return cls()
        result, params = doc.get("result", "f32"), doc.get("params", "f32")
        if result not in RESULT_CODECS or params not in PARAM_CODECS:
            raise ValueError(f"the master chose codecs this worker does not know: {result!r}, {params!r}")
        return cls(result, params, float(doc.get("topk_ratio", DEFAULT_TOPK_RATIO)),
                   int(doc.get("full_every", DEFAULT_FULL_EVERY)), int(doc.get("local_steps", 1)),
                   float(doc.get("local_learning_rate", 0.05)))


def negotiate(settings: LinkSettings, offer: Mapping[str, Any] | None) -> WelcomeCodecs:
    """The codecs for a client offering `offer` (`hello.codecs`; None: float32 only)."""
    offer = offer if isinstance(offer, Mapping) else {}
    return WelcomeCodecs(
        result=pick(_names(offer.get("results")), settings.result_codecs, RESULT_CODECS),
        params=pick(_names(offer.get("params")), settings.param_codecs, PARAM_CODECS),
        topk_ratio=settings.topk_ratio, full_every=settings.full_every,
        local_steps=settings.local_steps, local_learning_rate=settings.local_learning_rate,
    )


def _names(value: Any) -> list[str]:
    if not isinstance(value, list):
        return ["f32"]
    return [v for v in value[:16] if isinstance(v, str)]


def _codecs(value: Any, field: str, known: tuple[str, ...]) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise FieldError(field, f"must be a non-empty list of codec names from {', '.join(known)}, got {value!r}")
    unknown = [v for v in value if v not in known]
    if unknown:
        raise FieldError(field, f"unknown codec {unknown[0]!r}; known: {', '.join(known)}")
    if len(set(value)) != len(value):
        raise FieldError(field, f"lists a codec twice: {value!r}")
    return tuple(value)


def _ratio(value: Any) -> float:
    ratio = require_number(value, "topk_ratio")
    if not 0 < ratio <= 1:
        raise FieldError("topk_ratio", f"must be in (0, 1], got {value!r}")
    return ratio


def _positive(value: Any, field: str) -> float:
    number = require_number(value, field)
    if number <= 0:
        raise FieldError(field, f"must be > 0, got {value!r}")
    return number
