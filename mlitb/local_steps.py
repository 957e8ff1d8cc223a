"""Local steps (DiLoCo): a far trainer takes H optimizer steps alone and sends one parameter change.

With `local_steps` H = 1 a trainer returns a gradient sum, as always. With
H > 1 it splits its budget into H parts, after each part moves its own copy of
the parameters by local SGD (`w -= lr × mean gradient of that part`), and
returns the change `start − end` multiplied by its example count, in the
result's `grad` field, with that count. So the master's running sum divided by
the total count is the count-weighted average pseudo-gradient, exactly as a
gradient result is averaged, and every result codec (and its error feedback)
applies unchanged. The master then applies the *outer* optimizer to it:
SGD with Nesterov momentum as in DiLoCo (`v = μ v + Δ; w -= lr (Δ + μ v)`;
lr 1, μ 0 is plain averaging of the local models), or AdaGrad.

This module is pure (no I/O, no clock): `run_local_steps` takes the function
that computes one part, so the worker passes its budgeted batch loop and a
spot check passes the same deterministic batches.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlitb.model.layout import ParamBlock
from mlitb.optim import AdaGrad, Nesterov, Optimizer


@dataclass(frozen=True)
class PartResult:
    """What one local step computed at the parameters it was given: sums over `count` examples."""

    grad_sum: np.ndarray
    count: int
    loss_sum: float
    correct: int


@dataclass(frozen=True)
class LocalResult:
    """The `result` of H local steps: `grad` = (start − end) × count, plus the sums of the parts."""

    grad_sum: np.ndarray
    count: int
    loss_sum: float
    correct: int
    steps: int


def run_local_steps(part: Callable[[np.ndarray, int], PartResult], params: np.ndarray, steps: int,
                    learning_rate: float) -> LocalResult:
    """H steps of local SGD from `params` (not modified); `part(w, h)` computes step h's sums at w."""
    if steps < 1:
        raise ValueError(f"local steps must be >= 1, got {steps}")
    start = np.asarray(params, np.float32)
    w = start.copy()
    count = correct = 0
    loss_sum = 0.0
    lr = np.float32(learning_rate)
    for h in range(steps):
        r = part(w, h)
        if r.count < 1:
            break
        w -= lr * (r.grad_sum.astype(np.float32) / np.float32(r.count))
        count += r.count
        loss_sum += r.loss_sum
        correct += r.correct
    if count == 0:
        raise ValueError("no local step processed any example")
    return LocalResult((start - w) * np.float32(count), count, loss_sum, correct, steps)


OUTER_OPTIMIZERS: dict[str, type[Optimizer]] = {"nesterov": Nesterov, "adagrad": AdaGrad}


def outer_optimizer(spec: Mapping[str, Any], layout: list[ParamBlock]) -> Optimizer:
    """The outer optimizer a project's `outer_optimizer` names (`{"name": "nesterov" | "adagrad", hyper...}`)."""
    name = spec.get("name", "nesterov")
    if name not in OUTER_OPTIMIZERS:
        raise ValueError(f"unknown outer optimizer {name!r} (allowed: {', '.join(OUTER_OPTIMIZERS)})")
    return OUTER_OPTIMIZERS[name]({k: v for k, v in spec.items() if k != "name"}, layout)
