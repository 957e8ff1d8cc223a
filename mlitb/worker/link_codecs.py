"""A worker's side of the negotiated codecs: parameters in, results out.

`welcome.codecs` says which codecs this connection uses; this object holds
what they need between iterations (the parameters a delta applies to, the
error-feedback residual) and lives as long as the connection, so a reconnect
starts from a full frame and an empty residual, as the protocol says.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mlitb.codecs import BaseMismatch, ErrorFeedback, ParamsReceiver
from mlitb.links import WelcomeCodecs


@dataclass
class LinkCodecs:
    size: int
    chosen: WelcomeCodecs = field(default_factory=WelcomeCodecs)
    receiver: ParamsReceiver = field(init=False)
    feedback: ErrorFeedback = field(init=False)
    mismatches: int = 0  # delta frames whose base this worker did not hold (it skipped that work)

    def __post_init__(self) -> None:
        self.receiver = ParamsReceiver(self.size)
        self.feedback = ErrorFeedback(self.chosen.result, self.size, self.chosen.topk_ratio)

    @classmethod
    def from_welcome(cls, welcome: Mapping[str, Any], size: int) -> LinkCodecs:
        return cls(size, WelcomeCodecs.parse(welcome.get("codecs")))

    def on_params(self, message: Mapping[str, Any]) -> tuple[int, np.ndarray] | None:
        """The parameters a `params` frame gives (iteration, values), or None when its delta does not apply."""
        iteration = int(message["iteration"])
        try:
            return iteration, self.receiver.apply(iteration, message.get("codec", "f32"), message["params"],
                                                  message.get("base"))
        except BaseMismatch:
            self.mismatches += 1
            return None

    def encode_result(self, grad_sum: np.ndarray) -> tuple[str, bytes]:
        """(codec, bytes) of a result's `grad`, through error feedback."""
        return self.chosen.result, self.feedback.encode(grad_sum)
