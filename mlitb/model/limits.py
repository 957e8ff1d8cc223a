"""How large a model a master accepts: checked before anything is allocated for it.

A layer list is counted before it is expanded, and the parameter count comes
from the layout arithmetic (shapes times shapes, no arrays), so a request for
a million layers or for 795e9 parameters costs microseconds and answers a
400 naming the limit, instead of stalling the master or running it out of
memory. The defaults fit a volunteer's browser: every trainer holds a few
float32 copies of the parameters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mlitb.model.engine import Net


@dataclass(frozen=True)
class ModelLimits:
    max_layers: int = 100
    max_params: int = 10_000_000


class ModelTooLarge(ValueError):
    """A model over a limit; the message says by how much and names the setting that raises it."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def checked_net(layer_defs: Any, limits: ModelLimits) -> Net:
    """The net for `layer_defs` (SpecError if malformed), or ModelTooLarge before building a large one."""
    if isinstance(layer_defs, list) and len(layer_defs) > limits.max_layers:
        raise ModelTooLarge(f"has {len(layer_defs)} layer definitions; this master accepts at most "
                            f"{limits.max_layers} (MLITB_MAX_LAYERS)")
    net = Net(layer_defs)  # expansion and layout only: integer arithmetic, no parameter arrays
    if net.param_count > limits.max_params:
        raise ModelTooLarge(f"has {net.param_count:,} parameters; this master accepts at most "
                            f"{limits.max_params:,} (MLITB_MAX_PARAMS), which a volunteer's browser can hold")
    return net
