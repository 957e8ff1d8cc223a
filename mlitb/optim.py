"""Optimizers on the flat float32 parameter vector, fed by gradient sums from many workers.

Workers return `grad_sum` and `count` (examples behind it); the master adds
them up, so every step starts from the count-weighted average `g =
grad_sum / count` (MLitB's rule) and then adds ConvNetJS-style decay per
element: `g += l2_decay * l2_mul * w + l1_decay * l1_mul * sign(w)`, where
the multipliers come from the layout (biases have 0, so they never decay).
A per-element learning-rate multiplier (one value per layer, set with
`set_lr_multipliers`; 0 freezes a layer) scales `lr` in every rule below;
without one, `lr` is used as is (and a multiplier of 1 changes no bit).
The update rules, exactly:

* adagrad:  `gsum += g*g;  w -= lr * g / (sqrt(gsum) + eps)`
* sgd:      `v = momentum * v + g;  w -= lr * v`   (v is in gradient units, so
  a learning rate changed live takes effect at once)
* nesterov: `v = momentum * v + g;  w -= lr * (g + momentum * v)`  (DiLoCo's
  outer optimizer for local steps, local_steps.py; lr 1, momentum 0 averages
  the trainers' local models)
* adam:     `t += 1; m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g*g;
  w -= lr * (m / (1 - b1**t)) / (sqrt(v / (1 - b2**t)) + eps)`

Hyper-parameters can be changed between steps (the master changes the
learning rate live); state round-trips through float32 arrays for checkpoints
and closures.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from mlitb.model.layout import ParamBlock, decay_multipliers, param_count

COMMON_DEFAULTS = {"learning_rate": 0.01, "l1_decay": 0.0, "l2_decay": 0.0}


class Optimizer:
    """Base of the three rules: decay, hyper-parameters, state; subclasses only say how to move."""

    name = ""
    defaults: dict[str, float] = {}
    state_names: tuple[str, ...] = ()

    def __init__(self, hyper: Mapping[str, float], layout: list[ParamBlock]):
        self.size = param_count(layout)
        self.l1_mul, self.l2_mul = decay_multipliers(layout, self.size)
        self.hyper: dict[str, float] = {**COMMON_DEFAULTS, **self.defaults}
        self.set_hyper(hyper)
        self.state: dict[str, np.ndarray] = {key: np.zeros(self._state_shape(key), np.float32)
                                             for key in self.state_names}
        self.lr_mul: np.ndarray | None = None

    def set_lr_multipliers(self, mul: np.ndarray | None) -> None:
        """Per-element learning-rate multipliers (>= 0; 0 freezes), or None for 1 everywhere."""
        if mul is not None:
            mul = np.asarray(mul, dtype=np.float32)
            if mul.shape != (self.size,) or not np.isfinite(mul).all() or (mul < 0).any():
                raise ValueError(f"learning-rate multipliers must be {self.size} finite numbers >= 0")
            if (mul == 1).all():
                mul = None
        self.lr_mul = mul

    def _rate(self) -> np.float32 | np.ndarray:
        """The learning rate, per element when multipliers are set."""
        lr = np.float32(self.hyper["learning_rate"])
        return lr if self.lr_mul is None else lr * self.lr_mul

    def _state_shape(self, key: str) -> tuple[int, ...]:
        return (self.size,)

    def set_hyper(self, changes: Mapping[str, float]) -> None:
        """Change hyper-parameters; all are checked before any is applied."""
        checked = {}
        for key, value in changes.items():
            if key not in self.hyper:
                raise ValueError(f"{self.name} has no hyper-parameter {key!r} (allowed: {', '.join(self.hyper)})")
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{self.name} hyper-parameter {key!r} must be a finite number, got {value!r}")
            checked[key] = float(value)
            self._check(key, float(value))
        self.hyper.update(checked)

    def _check(self, key: str, value: float) -> None:
        if key in ("learning_rate", "eps") and value <= 0:
            raise ValueError(f"{self.name} hyper-parameter {key!r} must be > 0, got {value}")
        if key in ("l1_decay", "l2_decay") and value < 0:
            raise ValueError(f"{self.name} hyper-parameter {key!r} must be >= 0, got {value}")
        if key in ("momentum", "beta1", "beta2") and not 0 <= value < 1:
            raise ValueError(f"{self.name} hyper-parameter {key!r} must be in [0, 1), got {value}")

    def step(self, params: np.ndarray, grad_sum: np.ndarray, count: int) -> None:
        """One update of `params` (float32, in place) from the summed gradient of `count` examples."""
        if params.dtype != np.float32 or params.shape != (self.size,):
            raise ValueError(f"params must be float32 of shape ({self.size},), got {params.dtype} {params.shape}")
        if grad_sum.shape != (self.size,):
            raise ValueError(f"grad_sum must have shape ({self.size},), got {grad_sum.shape}")
        if count < 1:
            raise ValueError(f"count must be a positive number of examples, got {count}")
        h = self.hyper
        g = grad_sum.astype(np.float32) / np.float32(count)
        if h["l2_decay"]:
            g += np.float32(h["l2_decay"]) * self.l2_mul * params
        if h["l1_decay"]:
            g += np.float32(h["l1_decay"]) * self.l1_mul * np.sign(params)
        self._move(params, g)

    def _move(self, params: np.ndarray, g: np.ndarray) -> None:
        raise NotImplementedError

    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of the state as float32 arrays (what checkpoints and closures store)."""
        return {key: value.copy() for key, value in self.state.items()}

    def load_state_dict(self, state: Mapping[str, np.ndarray]) -> None:
        if set(state) != set(self.state_names):
            raise ValueError(f"{self.name} state must have exactly {list(self.state_names)}, got {sorted(state)}")
        loaded = {}
        for key in self.state_names:
            value = np.asarray(state[key], dtype=np.float32)
            if value.shape != self._state_shape(key):
                raise ValueError(f"{self.name} state {key!r} must have shape {self._state_shape(key)}, got {value.shape}")
            loaded[key] = value.copy()
        self.state = loaded


class AdaGrad(Optimizer):
    name = "adagrad"
    defaults = {"eps": 1e-6}
    state_names = ("gsum",)

    def _move(self, params: np.ndarray, g: np.ndarray) -> None:
        gsum = self.state["gsum"]
        gsum += g * g
        params -= self._rate() * g / (np.sqrt(gsum) + np.float32(self.hyper["eps"]))


class SGD(Optimizer):
    name = "sgd"
    defaults = {"momentum": 0.9}
    state_names = ("velocity",)

    def _move(self, params: np.ndarray, g: np.ndarray) -> None:
        v = self.state["velocity"]
        v *= np.float32(self.hyper["momentum"])
        v += g
        params -= self._rate() * v


class Nesterov(Optimizer):
    name = "nesterov"
    defaults = {"learning_rate": 0.7, "momentum": 0.9}
    state_names = ("velocity",)

    def _move(self, params: np.ndarray, g: np.ndarray) -> None:
        v = self.state["velocity"]
        mu = np.float32(self.hyper["momentum"])
        v *= mu
        v += g
        params -= self._rate() * (g + mu * v)


class Adam(Optimizer):
    name = "adam"
    defaults = {"learning_rate": 0.001, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8}
    state_names = ("m", "v", "t")

    def _state_shape(self, key: str) -> tuple[int, ...]:
        return (1,) if key == "t" else (self.size,)

    def _move(self, params: np.ndarray, g: np.ndarray) -> None:
        h, s = self.hyper, self.state
        s["t"] += 1
        t = float(s["t"][0])
        m, v = s["m"], s["v"]
        m *= np.float32(h["beta1"])
        m += np.float32(1 - h["beta1"]) * g
        v *= np.float32(h["beta2"])
        v += np.float32(1 - h["beta2"]) * g * g
        m_hat = m / np.float32(1 - h["beta1"] ** t)
        v_hat = v / np.float32(1 - h["beta2"] ** t)
        params -= self._rate() * m_hat / (np.sqrt(v_hat) + np.float32(h["eps"]))


OPTIMIZERS: dict[str, type[Optimizer]] = {cls.name: cls for cls in (AdaGrad, SGD, Adam, Nesterov)}


def optimizer_defaults(name: str) -> dict[str, float]:
    """Every hyper-parameter `name` accepts, with its default (for forms and for filtering)."""
    return {**COMMON_DEFAULTS, **_class(name).defaults}


def _class(name: str) -> type[Optimizer]:
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r} (allowed: {', '.join(OPTIMIZERS)})")
    return OPTIMIZERS[name]


def make_optimizer(name: str, hyper: Mapping[str, float], layout: list[ParamBlock]) -> Optimizer:
    """The optimizer `name` (adagrad, sgd, adam, nesterov) for a net's layout; unset hyper-parameters take defaults."""
    return _class(name)(hyper, layout)


def hyper_of(spec: Mapping[str, Any]) -> dict[str, float]:
    """The hyper-parameters of an optimizer as projects store it: `{"name": ..., hyper...}` less the name."""
    return {key: value for key, value in spec.items() if key != "name"}


def optimizer_from_spec(spec: Mapping[str, Any], layout: list[ParamBlock]) -> Optimizer:
    """The optimizer a project definition names (`{"name": ..., hyper...}`)."""
    return make_optimizer(spec["name"], hyper_of(spec), layout)
