"""A project to a research closure and back: what download and from-closure need.

Both directions start from a `Checkpoint` snapshot taken on the event loop,
so the heavy part (base64 of P floats, validation) runs in a thread on data
nobody else touches.
"""

from __future__ import annotations

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
    parse_optimizer,
)
from mlitb.model import Net
from mlitb.optim import optimizer_from_spec


def project_closure(definition: ProjectDef, net: Net, manifest: Manifest, snapshot: Checkpoint) -> str:
    """The closure JSON text of a project at `snapshot` (blocking: call in a thread)."""
    optimizer = optimizer_from_spec(definition.optimizer, net.layout)
    optimizer.load_state_dict(snapshot.optimizer_state)
    closure = build_closure(
        net, snapshot.params, list(manifest.classes), name=definition.name, optimizer=optimizer,
        normalization=Normalization(**definition.normalization),
        training=TrainingRecord(iteration=snapshot.iteration, settings={
            "iteration_ms": definition.iteration_ms, "eval_every": definition.eval_every, "seed": definition.seed}),
        dataset=DatasetFingerprint(manifest.id, manifest.name, [ref.id for ref in manifest.train.shards + manifest.test.shards]),
        metrics=snapshot.metrics,
    )
    return closure.dumps()


def project_from_closure(closure: Closure, manifest: Manifest | None, iteration_range: tuple[int, int],
                         default_eval_every: int) -> tuple[ProjectDef, Checkpoint]:
    """A paused project that resumes the closure's training at its iteration with its params and optimizer."""
    if closure.optimizer is None:
        raise ValidationError("optimizer", "this closure has no optimizer state: it can predict but not resume training")
    if manifest is None:
        raise ValidationError("dataset", f"the closure was trained on dataset {closure.dataset.id!r}, which is not on "
                                         "this data server; upload it first")
    if list(manifest.shape) != list(closure.input_shape) or len(manifest.classes) != len(closure.classes):
        raise ValidationError("dataset", f"dataset {manifest.id!r} no longer matches the closure's input shape and classes")
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
    )
    checkpoint = Checkpoint(iteration=closure.training.iteration, params=closure.params.copy(),
                            optimizer_state=closure.optimizer.state, metrics=closure.metrics)
    return definition, checkpoint
