"""The research closure: one JSON object that holds a trained model and how it came to be.

A closure lets anyone predict with the model (here, in a browser, or in
ConvNetJS after export) and lets a master resume training exactly where it
stopped, so it carries the optimizer state and the dataset fingerprint along
with the parameters. Float arrays are base64 of little-endian float32 so they
survive JSON bit for bit. `docs/closure.md` is the field-by-field reference;
loading checks every field and names the one that is wrong.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mlitb import __version__
from mlitb.model import Net, SpecError
from mlitb.model.layout import lr_multipliers
from mlitb.optim import OPTIMIZERS, Optimizer, make_optimizer
from mlitb.validate import (
    FieldError,
    is_number,
    require_number,
    require_object,
    require_text,
)

FORMAT = "mlitb-closure"
FORMAT_VERSION = 1
ALGORITHM = "mlitb-synchronous-map-reduce"
FIELDS = ("format", "format_version", "software", "name", "model", "input_shape", "normalization", "classes",
          "optimizer", "training", "dataset", "metrics")


class ClosureError(FieldError):
    """A closure field is wrong: `path` names it (e.g. `model.layers[2].filters`), the message says what is expected."""

    def __init__(self, path: str, message: str):
        super().__init__(path, message)
        self.path = path


@dataclass(frozen=True)
class Normalization:
    """Network input = pixel * scale + offset, pixels being uint8 0..255."""

    scale: float = 1 / 255
    offset: float = 0.0


@dataclass
class OptimizerRecord:
    """The optimizer to resume with: its name, hyper-parameters, float32 state arrays and the learning-rate
    multiplier of each layer definition (None: 1 for all)."""

    name: str
    hyper: dict[str, float]
    state: dict[str, np.ndarray]
    lr_multipliers: list[float] | None = None


@dataclass
class TrainingRecord:
    """How the parameters were trained: the algorithm, its settings (e.g. iteration_ms), the iterations
    closed (`iteration`, the number of the next one) and the optimizer steps taken (`steps`: an iteration
    that received no results takes no step, so steps <= iteration; Adam's `t` equals it)."""

    algorithm: str = ALGORITHM
    iteration: int = 0
    settings: dict[str, Any] = field(default_factory=dict)
    steps: int = 0
    # Per class (index as in `classes`): the iteration from which it was in the net; a class the dataset
    # gained while training appeared later than 0. None: every class from the start.
    class_since: list[int] | None = None


@dataclass
class DatasetFingerprint:
    """Which data trained the model: dataset id and name, the content hashes of its shards, and which of
    them are the test split (in order: the master evaluates on the first examples of these)."""

    id: str = ""
    name: str = ""
    shards: list[str] = field(default_factory=list)
    test: list[str] = field(default_factory=list)


@dataclass
class Closure:
    layers: list[dict[str, Any]]
    params: np.ndarray
    classes: list[str]
    input_shape: tuple[int, int, int]
    normalization: Normalization = Normalization()
    optimizer: OptimizerRecord | None = None
    training: TrainingRecord = field(default_factory=TrainingRecord)
    dataset: DatasetFingerprint = field(default_factory=DatasetFingerprint)
    metrics: list[dict[str, Any]] = field(default_factory=list)
    name: str = ""
    software_version: str = __version__
    format_version: int = FORMAT_VERSION

    def net(self) -> Net:
        return Net(self.layers)

    def make_optimizer(self) -> Optimizer:
        """The recorded optimizer with its state loaded, ready to take the next step."""
        if self.optimizer is None:
            raise ClosureError("optimizer", "this closure has no optimizer state, so it can predict but not resume")
        net = self.net()
        opt = make_optimizer(self.optimizer.name, self.optimizer.hyper, net.layout)
        opt.load_state_dict(self.optimizer.state)
        if self.optimizer.lr_multipliers is not None:
            opt.set_lr_multipliers(lr_multipliers(net.layers, net.layout, self.optimizer.lr_multipliers))
        return opt

    def to_json(self) -> dict[str, Any]:
        """The closure as a JSON-ready dict (field order as in docs/closure.md)."""
        return {
            "format": FORMAT,
            "format_version": self.format_version,
            "software": {"name": "mlitb", "version": self.software_version},
            "name": self.name,
            "model": {"layers": self.layers, "param_count": int(self.params.size), "params": encode_floats(self.params)},
            "input_shape": list(self.input_shape),
            "normalization": {"scale": self.normalization.scale, "offset": self.normalization.offset},
            "classes": list(self.classes),
            "optimizer": None if self.optimizer is None else {
                "name": self.optimizer.name,
                "hyper": dict(self.optimizer.hyper),
                "state": {key: encode_floats(value) for key, value in self.optimizer.state.items()},
                "lr_multipliers": self.optimizer.lr_multipliers,
            },
            "training": {"algorithm": self.training.algorithm, "iteration": self.training.iteration,
                         "steps": self.training.steps,
                         "class_since": self.training.class_since,
                         "settings": self.training.settings},
            "dataset": {"id": self.dataset.id, "name": self.dataset.name, "shards": list(self.dataset.shards),
                        "test": list(self.dataset.test)},
            "metrics": self.metrics,
        }

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=1, allow_nan=False)


def encode_floats(values: np.ndarray) -> str:
    """Base64 of the little-endian float32 bytes."""
    return base64.b64encode(np.ascontiguousarray(values, dtype="<f4").tobytes()).decode("ascii")


def decode_floats(text: Any, path: str, count: int) -> np.ndarray:
    """The float32 array `count` long that `text` encodes, or a ClosureError at `path`."""
    expect = f"base64 of {count} little-endian float32 values ({4 * count} bytes)"
    if not isinstance(text, str):
        raise ClosureError(path, f"must be a string, {expect}")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ClosureError(path, f"is not valid base64; expected {expect}") from None
    if len(raw) != 4 * count:
        raise ClosureError(path, f"must be {expect}, got {len(raw)} bytes")
    return np.frombuffer(raw, dtype="<f4").astype(np.float32)


def build_closure(net: Net, params: np.ndarray, classes: list[str], *, name: str = "",
                  optimizer: Optimizer | None = None, normalization: Normalization = Normalization(),
                  training: TrainingRecord | None = None, dataset: DatasetFingerprint | None = None,
                  metrics: list[dict[str, Any]] | None = None,
                  lr_multipliers: list[float] | None = None) -> Closure:
    """A closure of the current state; checked the same way a loaded one is, so it always loads back.
    `lr_multipliers`: the per-layer learning-rate multipliers the optimizer trained with."""
    record = None
    if optimizer is not None:
        record = OptimizerRecord(optimizer.name, dict(optimizer.hyper), optimizer.state_dict(), lr_multipliers)
    closure = Closure(
        layers=net.layer_defs, params=np.array(params, dtype=np.float32), classes=[str(c) for c in classes],
        input_shape=net.input_shape, normalization=normalization, optimizer=record,
        training=training or TrainingRecord(), dataset=dataset or DatasetFingerprint(),
        metrics=list(metrics or []), name=name)
    load_closure(closure.to_json())
    return closure


def load_closure(obj_or_text: str | bytes | dict[str, Any]) -> Closure:
    """Parse and check a closure; a ClosureError names the first wrong field and what it should be."""
    try:
        return _load(obj_or_text)
    except ClosureError:
        raise
    except FieldError as exc:
        raise ClosureError(exc.field, exc.message) from None


def _load(obj_or_text: str | bytes | dict[str, Any]) -> Closure:
    obj = obj_or_text
    if isinstance(obj, (str, bytes)):
        try:
            obj = json.loads(obj)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ClosureError("(closure)", f"is not valid JSON: {exc}") from None
    obj = require_object(obj, "(closure)")
    unknown = sorted(set(obj) - set(FIELDS))
    if unknown:
        raise ClosureError(unknown[0], f"is not a closure field (fields: {', '.join(FIELDS)})")
    if obj.get("format") != FORMAT:
        raise ClosureError("format", f"must be {FORMAT!r}, got {obj.get('format')!r}")
    if obj.get("format_version") != FORMAT_VERSION:
        raise ClosureError("format_version", f"must be {FORMAT_VERSION} (this mlitb reads version 1), "
                                             f"got {obj.get('format_version')!r}")
    software = require_object(obj.get("software"), "software")
    version = require_text(software.get("version"), "software.version")

    model = require_object(obj.get("model"), "model")
    try:
        net = Net(model.get("layers"))
    except SpecError as exc:
        path = "model.layers" + ("" if exc.index is None else f"[{exc.index}]") + (f".{exc.field}" if exc.field else "")
        raise ClosureError(path, exc.message) from None
    if model.get("param_count") != net.param_count:
        raise ClosureError("model.param_count", f"must be {net.param_count} for these layers, got {model.get('param_count')!r}")
    params = decode_floats(model.get("params"), "model.params", net.param_count)

    shape = obj.get("input_shape")
    if shape != list(net.input_shape):
        raise ClosureError("input_shape", f"must be [height, width, depth] = {list(net.input_shape)} "
                                          f"as the input layer says, got {shape!r}")
    norm = require_object(obj.get("normalization"), "normalization")
    normalization = Normalization(require_number(norm.get("scale"), "normalization.scale"),
                                  require_number(norm.get("offset"), "normalization.offset"))
    if normalization.scale == 0:
        raise ClosureError("normalization.scale", "must not be 0")
    classes = obj.get("classes")
    if not isinstance(classes, list) or len(classes) != net.num_classes or not all(isinstance(c, str) for c in classes):
        raise ClosureError("classes", f"must be a list of {net.num_classes} class names (strings), got {classes!r}")

    optimizer = _optimizer(obj.get("optimizer"), net)
    return Closure(
        layers=model["layers"], params=params, classes=classes, input_shape=net.input_shape,
        normalization=normalization, optimizer=optimizer,
        training=_training(obj.get("training"), optimizer, len(classes)), dataset=_dataset(obj.get("dataset")),
        metrics=_metrics(obj.get("metrics")), name=require_text(obj.get("name"), "name", empty=True),
        software_version=version)


def _optimizer(value: Any, net: Net) -> OptimizerRecord | None:
    if value is None:
        return None
    value = require_object(value, "optimizer")
    name = value.get("name")
    if name not in OPTIMIZERS:
        raise ClosureError("optimizer.name", f"must be one of {', '.join(OPTIMIZERS)}, got {name!r}")
    hyper = require_object(value.get("hyper"), "optimizer.hyper")
    try:
        opt = make_optimizer(name, hyper, net.layout)
    except ValueError as exc:
        raise ClosureError("optimizer.hyper", str(exc)) from None
    raw_state = require_object(value.get("state"), "optimizer.state")
    if set(raw_state) != set(opt.state_names):
        raise ClosureError("optimizer.state", f"{name} state has exactly {list(opt.state_names)}, got {sorted(raw_state)}")
    state = {key: decode_floats(raw_state[key], f"optimizer.state.{key}", int(np.prod(opt.state[key].shape)))
             for key in opt.state_names}
    return OptimizerRecord(name, dict(opt.hyper), state, _lr_multipliers(value.get("lr_multipliers"), net))


def _lr_multipliers(value: Any, net: Net) -> list[float] | None:
    """Absent or null: 1 for every layer (closures written before per-layer rates)."""
    if value is None:
        return None
    count = len(net.layer_defs)
    if not isinstance(value, list) or len(value) != count or not all(is_number(v) and v >= 0 for v in value):
        raise ClosureError("optimizer.lr_multipliers", f"must be a list of {count} numbers >= 0, one per layer "
                                                       f"of model.layers, or null, got {value!r}")
    return [float(v) for v in value]


def _training(value: Any, optimizer: OptimizerRecord | None, num_classes: int) -> TrainingRecord:
    value = require_object(value, "training")
    iteration = value.get("iteration")
    if isinstance(iteration, bool) or not isinstance(iteration, int) or iteration < 0:
        raise ClosureError("training.iteration", f"must be a non-negative integer, got {iteration!r}")
    steps = value.get("steps")
    if steps is None:  # written before steps were counted: Adam's t knows them, else every iteration stepped
        steps = int(optimizer.state["t"][0]) if optimizer is not None and "t" in optimizer.state else iteration
    if isinstance(steps, bool) or not isinstance(steps, int) or not 0 <= steps <= iteration:
        raise ClosureError("training.steps", f"must be an integer from 0 to training.iteration ({iteration}), got {steps!r}")
    since = value.get("class_since")
    if since is not None and (not isinstance(since, list) or len(since) != num_classes or not all(
            isinstance(i, int) and not isinstance(i, bool) and 0 <= i <= iteration for i in since)):
        raise ClosureError("training.class_since", f"must be a list of {num_classes} iterations (one per class, "
                                                   f"from 0 to training.iteration), got {since!r}")
    return TrainingRecord(require_text(value.get("algorithm"), "training.algorithm"), iteration,
                          require_object(value.get("settings"), "training.settings"), steps, since)


def _dataset(value: Any) -> DatasetFingerprint:
    value = require_object(value, "dataset")
    shards = value.get("shards")
    if not isinstance(shards, list) or not all(isinstance(s, str) and s for s in shards):
        raise ClosureError("dataset.shards", f"must be a list of shard hashes (strings), got {shards!r}")
    test = value.get("test", [])  # absent in closures written before it was recorded
    if not isinstance(test, list) or not all(isinstance(s, str) for s in test) or not set(test) <= set(shards):
        raise ClosureError("dataset.test", f"must be a list of the test split's shard hashes, each one of "
                                           f"dataset.shards, got {test!r}")
    return DatasetFingerprint(require_text(value.get("id"), "dataset.id", empty=True),
                              require_text(value.get("name"), "dataset.name", empty=True), shards, test)


def _metrics(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise ClosureError("metrics", f"must be a list of objects, got {type(value).__name__}")
    for i, entry in enumerate(value):
        require_object(entry, f"metrics[{i}]")
    return value
