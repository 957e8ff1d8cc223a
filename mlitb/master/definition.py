"""A project's definition: what a researcher asked for, validated field by field.

The definition is the persisted, human-readable part of a project (JSON at
`projects/{id}/definition`); the trained state lives in the checkpoint. Every
validation error names the field, so the API can answer a 400 a person can fix.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from mlitb.links import LinkSettings
from mlitb.master.aggregation import RULES as AGGREGATION_RULES
from mlitb.model import Net, SpecError
from mlitb.model.limits import ModelLimits, ModelTooLarge, checked_net
from mlitb.optim import OPTIMIZERS, optimizer_defaults
from mlitb.validate import (
    FieldError,
    is_number,
    require_int,
    require_number,
    require_object,
    require_text,
)

STATUSES = ("running", "paused")
PREDICT_ACCESS = ("public", "admin")  # who may POST /api/projects/{id}/predict
DEFAULT_OPTIMIZER = "adagrad"
# name -> (lowest allowed, highest allowed, lowest inclusive); each optimizer accepts its own subset.
_HYPER_RANGES: dict[str, tuple[float, float, bool]] = {
    "learning_rate": (0.0, 10.0, False),
    "l1_decay": (0.0, 1.0, True),
    "l2_decay": (0.0, 1.0, True),
    "momentum": (0.0, 0.9999, True),
    "beta1": (0.0, 0.9999, True),
    "beta2": (0.0, 0.999999, True),
    "eps": (0.0, 1.0, False),
}
MAX_NAME = 200
MAX_LR_MULTIPLIER = 100.0
DEFAULT_AGGREGATION = "centered_clip"
MAX_NORMALIZATION = 1000.0
MAX_DESCRIPTION = 2000


class ValidationError(FieldError):
    """A request body field is wrong: `field` names it (dotted), `message` says what is allowed.

    For a layer definition, `field` is the layer's field and `extra` holds the layer index.
    """

    def __init__(self, field: str, message: str, *, text: str | None = None, **extra: Any) -> None:
        super().__init__(field, message, text=text)
        self.extra = extra

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), **self.extra}


@dataclass(frozen=True)
class ProjectDef:
    """Everything a researcher chose for a project, plus its status."""

    id: str
    name: str
    dataset: str
    layers: list[dict[str, Any]]
    iteration_ms: int
    optimizer: dict[str, Any]
    normalization: dict[str, float]
    eval_every: int
    seed: int
    status: str = "paused"
    created: float = field(default_factory=time.time)
    # One learning-rate multiplier per entry of `layers` (0 freezes that layer); None: 1 everywhere.
    lr_multipliers: list[float] | None = None
    description: str = ""  # what volunteers read before lending their device; plain text, shown escaped
    aggregation: str = DEFAULT_AGGREGATION  # how clients' gradients are combined (aggregation.py, security.md)
    predict_access: str = "public"
    links: dict[str, Any] = field(default_factory=dict)  # codecs and local steps (mlitb/links.py); {} = float32

    @property
    def link_settings(self) -> LinkSettings:
        return LinkSettings.parse(self.links)

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes) -> ProjectDef:
        return cls(**json.loads(data))

    def with_status(self, status: str) -> ProjectDef:
        return replace(self, status=status)


def new_project_id(name: str) -> str:
    """A short readable id: a slug of the name plus random hex, unique enough for a master."""
    slug = "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")[:24].strip("-") or "project"
    return f"{slug}-{secrets.token_hex(4)}"


def check_layers(layers: Any, limits: ModelLimits = ModelLimits()) -> Net:
    """Build the net or raise ValidationError naming the layer index and field, or the limit it is over."""
    try:
        return checked_net(layers, limits)
    except ModelTooLarge as exc:
        raise ValidationError("layers", exc.message) from exc
    except SpecError as exc:
        # architecture.md: a layer error answers {error, layer, field} with the layer's own field.
        raise ValidationError(exc.field or "layers", exc.message, text=str(exc), layer=exc.index) from exc
    except (TypeError, ValueError, KeyError, RecursionError) as exc:
        raise ValidationError("layers", f"not a valid list of layer definitions: {exc}") from exc


def check_layers_body(raw: bytes, limits: ModelLimits = ModelLimits()) -> Net:
    """`{"layers": [...]}` as `POST /api/layers/check` sends it, parsed and checked (the app runs this in a
    thread, after the body limit: parsing is the one costly step an unauthenticated client can ask for)."""
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ValidationError("body", f"is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise ValidationError("body", "must be a JSON object {\"layers\": [...]}")
    return check_layers(body.get("layers"), limits)


def parse_create(body: Any, *, dataset_shape: tuple[int, int, int] | None, num_classes: int | None,
                 default_eval_every: int, iteration_range: tuple[int, int],
                 model_limits: ModelLimits = ModelLimits()) -> tuple[ProjectDef, Net]:
    """A new project's definition from a POST body; `dataset_shape` None means the dataset does not exist."""
    body = require_object(body, "body")
    name = _name(body, "name")
    dataset = _name(body, "dataset")
    if dataset_shape is None:
        raise ValidationError("dataset", f"no dataset {dataset!r}; upload it to the data server first (GET /datasets lists them)")
    net = check_layers(body.get("layers"), model_limits)
    if list(net.input_shape) != list(dataset_shape):
        raise ValidationError("layers", f"the input layer is {list(net.input_shape)} (sy, sx, depth) but dataset "
                                        f"{dataset!r} holds images of {list(dataset_shape)} (height, width, channels)", layer=0)
    if net.num_classes != num_classes:
        raise ValidationError("layers", f"the net has {net.num_classes} classes but dataset {dataset!r} has {num_classes}")
    status = body.get("status", "paused")
    if status not in STATUSES:
        raise ValidationError("status", f"must be one of {', '.join(STATUSES)}")
    definition = ProjectDef(
        id=new_project_id(name),
        name=name,
        dataset=dataset,
        layers=body["layers"],
        iteration_ms=_iteration_ms(body.get("iteration_ms", 1000), iteration_range),
        optimizer=parse_optimizer(body.get("optimizer", {}), None),
        normalization=_normalization(body.get("normalization", {"scale": 1 / 255, "offset": 0.0})),
        eval_every=require_int(body.get("eval_every", default_eval_every), "eval_every", 1, 1_000_000),
        seed=require_int(body.get("seed", 0), "seed", 0, 2**32 - 1),
        status=status,
        lr_multipliers=parse_lr_multipliers(body.get("lr_multipliers"), body["layers"]),
        description=_description(body.get("description", "")),
        aggregation=_aggregation(body.get("aggregation", DEFAULT_AGGREGATION)),
        predict_access=_predict_access(body.get("predict_access", "public")),
        links=_links(body.get("links", {}), body.get("optimizer", {})),
    )
    return definition, net


def parse_patch(body: Any, current: ProjectDef, iteration_range: tuple[int, int]) -> ProjectDef:
    """The definition after a PATCH; the name, description, T, aggregation, optimizer hyper-parameters and
    per-layer learning-rate multipliers."""
    body = require_object(body, "body")
    allowed = {"name", "description", "iteration_ms", "optimizer", "aggregation", "predict_access", "lr_multipliers"}
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise ValidationError(unknown[0], f"cannot be changed; PATCH accepts {', '.join(sorted(allowed))}")
    changes: dict[str, Any] = {}
    if "name" in body:
        changes["name"] = _name(body, "name")
    if "description" in body:
        changes["description"] = _description(body["description"])
    if "aggregation" in body:
        changes["aggregation"] = _aggregation(body["aggregation"])
    if "iteration_ms" in body:
        changes["iteration_ms"] = _iteration_ms(body["iteration_ms"], iteration_range)
    if "predict_access" in body:
        changes["predict_access"] = _predict_access(body["predict_access"])
    if "optimizer" in body:
        optimizer = parse_optimizer(body["optimizer"], current.optimizer)
        if optimizer["name"] != current.optimizer["name"]:
            raise ValidationError("optimizer.name", "cannot change on an existing project (its state belongs to "
                                                    f"{current.optimizer['name']}); create a new project instead")
        changes["optimizer"] = optimizer
    if "lr_multipliers" in body:
        changes["lr_multipliers"] = parse_lr_multipliers(body["lr_multipliers"], current.layers)
    return replace(current, **changes)


def parse_lr_multipliers(raw: Any, layers: list[dict[str, Any]]) -> list[float] | None:
    """One number in [0, 100] per layer definition (0 freezes the layer; layers without parameters
    ignore theirs), or None for 1 everywhere."""
    if raw is None:
        return None
    if not isinstance(raw, list) or len(raw) != len(layers):
        raise ValidationError("lr_multipliers", f"must be a list of {len(layers)} numbers, one per layer "
                                                f"(1 keeps the learning rate, 0 freezes the layer), got {raw!r}")
    for i, value in enumerate(raw):
        if not is_number(value) or not 0 <= value <= MAX_LR_MULTIPLIER:
            raise ValidationError(f"lr_multipliers[{i}]", f"must be a number from 0 (frozen) to "
                                                          f"{MAX_LR_MULTIPLIER:g}, got {value!r}", layer=i)
    return [float(v) for v in raw]


def parse_optimizer(raw: Any, base: dict[str, Any] | None) -> dict[str, Any]:
    """`{name, hyper...}` over `base` (None: the named optimizer's defaults); unknown keys and bad values refused."""
    raw = require_object(raw, "optimizer")
    name = raw.get("name", base["name"] if base else DEFAULT_OPTIMIZER)
    if not isinstance(name, str) or name not in OPTIMIZERS:
        raise ValidationError("optimizer.name", f"must be one of {', '.join(OPTIMIZERS)}, got {name!r}")
    result: dict[str, Any] = {"name": name, **(base if base and base["name"] == name else optimizer_defaults(name))}
    for key, value in raw.items():
        if key == "name":
            continue
        if key not in result:
            allowed = ", ".join(k for k in result if k != "name")
            raise ValidationError(f"optimizer.{key}", f"unknown hyper-parameter for {name}; it takes {allowed}")
        low, high, inclusive = _HYPER_RANGES[key]
        if not is_number(value) or value > high or value < low or (value == low and not inclusive):
            bound = "[" if inclusive else "("
            raise ValidationError(f"optimizer.{key}", f"must be a number in {bound}{low:g}, {high:g}], got {value!r}")
        result[key] = float(value)
    return result


def _predict_access(value: Any) -> str:
    if value not in PREDICT_ACCESS:
        raise ValidationError("predict_access", f"must be 'public' (anyone may ask for predictions, within the "
                                                f"rate limit) or 'admin' (the admin token is needed), got {value!r}")
    return value


def _links(raw: Any, optimizer: Any) -> dict[str, Any]:
    """Codecs and local steps; with local steps the optimizer is the outer one, so it must suit a pseudo-gradient."""
    raw = require_object(raw, "links")
    allowed = set(LinkSettings().to_json())
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise ValidationError(f"links.{unknown[0]}", f"unknown; links takes {', '.join(sorted(allowed))}")
    try:
        settings = LinkSettings.parse(raw)
    except FieldError as exc:
        raise ValidationError(f"links.{exc.field}", exc.message) from exc
    name = optimizer.get("name", DEFAULT_OPTIMIZER) if isinstance(optimizer, dict) else DEFAULT_OPTIMIZER
    if settings.local_steps > 1 and name not in ("nesterov", "adagrad"):
        raise ValidationError("optimizer.name", f"with local steps the optimizer is the outer one: nesterov (DiLoCo) "
                                                f"or adagrad, got {name!r}")
    return settings.to_json()


def _iteration_ms(value: Any, bounds: tuple[int, int]) -> int:
    return require_int(value, "iteration_ms", bounds[0], bounds[1])


def _normalization(raw: Any) -> dict[str, float]:
    raw = require_object(raw, "normalization")
    result = {"scale": 1 / 255, "offset": 0.0}
    for key, value in raw.items():
        if key not in result:
            raise ValidationError(f"normalization.{key}", "unknown; normalization has 'scale' and 'offset'")
        value = require_number(value, f"normalization.{key}")
        if abs(value) > MAX_NORMALIZATION:
            raise ValidationError(f"normalization.{key}", f"must be within ±{MAX_NORMALIZATION:g} (inputs are "
                                  f"pixel × scale + offset; 1/255 and 0 map pixels to [0, 1]), got {value!r}")
        result[key] = value
    if result["scale"] == 0:
        raise ValidationError("normalization.scale", "must not be 0")
    return result


def _name(body: dict[str, Any], field: str) -> str:
    return require_text(body.get(field), field, max_len=MAX_NAME).strip()


def _aggregation(value: Any) -> str:
    if value not in AGGREGATION_RULES:
        raise ValidationError("aggregation", f"must be one of {', '.join(AGGREGATION_RULES)}, got {value!r}")
    return value


def _description(value: Any) -> str:
    """Optional plain text for volunteers; may be empty (no description)."""
    return require_text(value, "description", max_len=MAX_DESCRIPTION, empty=True).strip()
