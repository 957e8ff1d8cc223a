"""A project to a research closure and back: what download and from-closure need.

Both directions start from a `Checkpoint` snapshot taken on the event loop,
so the heavy part (base64 of P floats, validation) runs in a thread on data
nobody else touches.
"""

from __future__ import annotations

from typing import Any

from mlitb.closure import (
    Closure,
    DatasetFingerprint,
    Normalization,
    TrainingRecord,
    build_closure,
)
from mlitb.data.manifest import Manifest
from mlitb.master.checkpoint import Checkpoint
from mlitb.master.definition import (
    ProjectDef,
    ValidationError,
    new_project_id,
    parse_create,
    parse_optimizer,
)
from mlitb.model import Net
from mlitb.optim import optimizer_from_spec
from mlitb.transfer import transfer
from mlitb.validate import FieldError, require_int, require_object


def fingerprint(manifest: Manifest) -> list[str]:
    """The content hashes of every shard of a dataset revision: train, then test."""
    return [ref.id for ref in manifest.train.shards + manifest.test.shards]


def check_fingerprint(closure: Closure, manifest: Manifest) -> None:
    """Refuse to resume on data other than the closure's: a 400 naming `dataset.shards` and what differs."""
    recorded, here = set(closure.dataset.shards), set(fingerprint(manifest))
    if recorded == here:
        return
    missing, extra = len(recorded - here), len(here - recorded)
    raise ValidationError("dataset.shards", (
        f"the closure was trained on {len(recorded)} shards; dataset {manifest.id!r} on this data server (revision "
        f"{manifest.revision}) lacks {missing} of them and has {extra} others, so training would go on with "
        "different data. Upload the closure's data as a new dataset, or add ?ignore_fingerprint=1 to resume "
        "on this dataset anyway"))


def project_closure(definition: ProjectDef, net: Net, manifest: Manifest, snapshot: Checkpoint,
                    eval_max_examples: int) -> str:
    """The closure JSON text of a project at `snapshot` (blocking: call in a thread). `eval_max_examples`
    (the master's) says how many test examples its test figures cover, for `mlitb verify`."""
    optimizer = optimizer_from_spec(definition.optimizer, net.layout)
    optimizer.load_state_dict(snapshot.optimizer_state)
    closure = build_closure(
        net, snapshot.params, list(manifest.classes), name=definition.name, optimizer=optimizer,
        normalization=Normalization(**definition.normalization),
        training=TrainingRecord(iteration=snapshot.iteration, steps=snapshot.steps or 0,
                                class_since=snapshot.class_since, settings={
            "iteration_ms": definition.iteration_ms, "eval_every": definition.eval_every, "seed": definition.seed,
            "eval_max_examples": eval_max_examples}),
        dataset=DatasetFingerprint(manifest.id, manifest.name, fingerprint(manifest),
                                   [ref.id for ref in manifest.test.shards]),
        metrics=snapshot.metrics, lr_multipliers=definition.lr_multipliers,
    )
    return closure.dumps()


def project_from_closure(closure: Closure, manifest: Manifest | None, iteration_range: tuple[int, int],
                         default_eval_every: int, ignore_fingerprint: bool = False) -> tuple[ProjectDef, Checkpoint]:
    """A paused project that resumes the closure's training at its iteration with its params and optimizer;
    on the closure's exact data (its shard hashes) unless `ignore_fingerprint`."""
    if closure.optimizer is None:
        raise ValidationError("optimizer", "this closure has no optimizer state: it can predict but not resume training")
    if manifest is None:
        raise ValidationError("dataset", f"the closure was trained on dataset {closure.dataset.id!r}, which is not on "
                                         "this data server; upload it first")
    if list(manifest.shape) != list(closure.input_shape) or len(manifest.classes) != len(closure.classes):
        raise ValidationError("dataset", f"dataset {manifest.id!r} no longer matches the closure's input shape and classes")
    if not ignore_fingerprint:
        check_fingerprint(closure, manifest)
    settings = closure.training.settings
    iteration_ms = settings.get("iteration_ms")
    if not isinstance(iteration_ms, int) or not iteration_range[0] <= iteration_ms <= iteration_range[1]:
        iteration_ms = min(max(1000, iteration_range[0]), iteration_range[1])
    eval_every = settings.get("eval_every", default_eval_every)
    seed = settings.get("seed", 0)
    name = closure.name or "resumed closure"
    definition = ProjectDef(
        id=new_project_id(name),
        name=name,
        dataset=manifest.id,
        layers=closure.layers,
        iteration_ms=iteration_ms,
        optimizer=parse_optimizer({"name": closure.optimizer.name, **closure.optimizer.hyper}, None),
        normalization={"scale": closure.normalization.scale, "offset": closure.normalization.offset},
        eval_every=eval_every if isinstance(eval_every, int) and eval_every >= 1 else default_eval_every,
        seed=seed if isinstance(seed, int) and 0 <= seed < 2**32 else 0,
        status="paused",
        lr_multipliers=closure.optimizer.lr_multipliers,
    )
    checkpoint = Checkpoint(iteration=closure.training.iteration, params=closure.params.copy(),
                            optimizer_state=closure.optimizer.state, metrics=closure.metrics,
                            steps=closure.training.steps, class_since=closure.training.class_since)
    return definition, checkpoint


def project_by_transfer(body: Any, closure: Closure, manifest: Manifest | None, iteration_range: tuple[int, int],
                        default_eval_every: int) -> tuple[ProjectDef, Checkpoint]:
    """A new project (iteration 0, fresh optimizer) on `manifest` whose layers and parameters come from
    `closure`: the body of `POST /api/projects` with `from` and optionally `head: "replace"`."""
    body = require_object(body, "body")
    if "layers" in body:
        raise ValidationError("layers", "come from the closure named in 'from'; leave them out (head: \"replace\" "
                                        "gives the last layer the dataset's classes)")
    if manifest is None:
        raise ValidationError("dataset", f"no dataset {body.get('dataset')!r}; upload it to the data server first "
                                         "(GET /datasets lists them)")
    seed = require_int(body.get("seed", 0), "seed", 0, 2**32 - 1)
    try:
        layers, params = transfer(closure, tuple(manifest.shape), len(manifest.classes), body.get("head"), seed)
    except FieldError as exc:
        raise ValidationError(exc.field, exc.message) from None
    fields = {key: value for key, value in body.items() if key not in ("from", "head")}
    fields.setdefault("normalization", {"scale": closure.normalization.scale, "offset": closure.normalization.offset})
    definition, net = parse_create({**fields, "layers": layers}, dataset_shape=tuple(manifest.shape),
                                   num_classes=len(manifest.classes), default_eval_every=default_eval_every,
                                   iteration_range=iteration_range)
    fresh = optimizer_from_spec(definition.optimizer, net.layout)
    return definition, Checkpoint(iteration=0, params=params, optimizer_state=fresh.state_dict(), steps=0)
