"""Never broadcast non-finite parameters: an optimizer step that produces NaN or inf is undone.

A hyper-parameter changed live (a learning rate far too high) can make the
optimizer diverge; one NaN in the broadcast parameters would poison every
worker and every later step. The step is taken on the live arrays and checked
afterwards; on failure parameters and optimizer state are put back as they
were before it, and the loop reports the error (supervision.py).
"""

from __future__ import annotations

import numpy as np

from mlitb.optim import Optimizer


class NonFiniteUpdate(ArithmeticError):
    """An optimizer step produced NaN or infinite parameters or state; it was undone."""


def guarded_step(optimizer: Optimizer, params: np.ndarray, grad_sum: np.ndarray, count: int, iteration: int) -> None:
    """`optimizer.step` in place, or NonFiniteUpdate with `params` and the optimizer's state unchanged."""
    saved_params, saved_state = params.copy(), optimizer.state_dict()
    optimizer.step(params, grad_sum, count)
    if np.isfinite(params).all() and all(np.isfinite(v).all() for v in optimizer.state.values()):
        return
    params[...] = saved_params
    optimizer.load_state_dict(saved_state)
    raise NonFiniteUpdate(
        f"the update of iteration {iteration} would make the parameters non-finite (NaN or infinite), so it was "
        f"refused and the last good parameters kept; lower the learning rate ({optimizer.hyper['learning_rate']:g})")
