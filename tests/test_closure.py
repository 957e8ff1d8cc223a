"""Research closure: exact round trips, resuming, and errors that name the wrong field."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mlitb import __version__
from mlitb.closure import (
    ClosureError,
    DatasetFingerprint,
    Normalization,
    TrainingRecord,
    build_closure,
    load_closure,
)
from mlitb.model import Net
from mlitb.optim import make_optimizer

LAYERS = [
    {"type": "input", "out_sx": 6, "out_sy": 5, "out_depth": 1},
    {"type": "conv", "sx": 3, "filters": 2, "pad": 1, "activation": "relu"},
    {"type": "pool", "sx": 2, "stride": 2},
    {"type": "softmax", "num_classes": 3},
]


def _trained():
    net = Net(LAYERS)
    params = net.init_params(0)
    opt = make_optimizer("adam", {"learning_rate": 0.01, "l2_decay": 0.001}, net.layout)
    rng = np.random.default_rng(1)
    for _ in range(3):
        x = rng.random((4,) + net.input_shape, dtype=np.float32)
        g = net.gradient(params, x, rng.integers(0, 3, 4))
        opt.step(params, g.grad_sum, g.count)
    closure = build_closure(
        net, params, ["cat", "dog", "eel"], name="pets", optimizer=opt,
        normalization=Normalization(scale=2 / 255, offset=-1.0),
        training=TrainingRecord(iteration=3, settings={"iteration_ms": 2000, "seed": 7}),
        dataset=DatasetFingerprint(id="ds1", name="pets", shards=["a1b2", "c3d4"]),
        metrics=[{"iteration": 3, "loss": 1.05, "train_error": 0.5}])
    return net, params, opt, closure


def test_round_trip_is_bit_exact_and_complete():
    net, params, opt, closure = _trained()
    text = closure.dumps()
    loaded = load_closure(text)
    assert loaded.params.dtype == np.float32
    assert loaded.params.tobytes() == params.tobytes()
    for key, value in opt.state_dict().items():
        assert loaded.optimizer.state[key].tobytes() == value.tobytes()
    assert loaded.optimizer.name == "adam" and loaded.optimizer.hyper == opt.hyper
    assert loaded.layers == LAYERS and loaded.input_shape == (5, 6, 1)
    assert loaded.classes == ["cat", "dog", "eel"] and loaded.name == "pets"
    assert loaded.normalization == Normalization(2 / 255, -1.0)
    assert loaded.training == TrainingRecord(iteration=3, settings={"iteration_ms": 2000, "seed": 7})
    assert loaded.dataset.shards == ["a1b2", "c3d4"]
    assert loaded.metrics == [{"iteration": 3, "loss": 1.05, "train_error": 0.5}]
    assert loaded.software_version == __version__
    assert loaded.dumps() == text


def test_json_is_readable_with_versions_on_top():
    obj = json.loads(_trained()[3].dumps())
    assert obj["format"] == "mlitb-closure" and obj["format_version"] == 1
    assert obj["software"] == {"name": "mlitb", "version": __version__}
    assert obj["model"]["param_count"] == Net(LAYERS).param_count
    assert obj["training"]["algorithm"] == "mlitb-synchronous-map-reduce"


def test_resuming_from_a_closure_continues_exactly():
    net, params, opt, closure = _trained()
    resumed = load_closure(closure.dumps())
    opt2, params2 = resumed.make_optimizer(), resumed.params.copy()
    grad = np.random.default_rng(5).normal(size=net.param_count).astype(np.float32)
    opt.step(params, grad, 4)
    opt2.step(params2, grad, 4)
    assert np.array_equal(params, params2)


def test_predict_only_closure_without_optimizer():
    net = Net(LAYERS)
    closure = load_closure(build_closure(net, net.init_params(0), ["a", "b", "c"]).dumps())
    assert closure.optimizer is None
    assert closure.normalization == Normalization(1 / 255, 0.0)
    with pytest.raises(ClosureError, match="can predict but not resume"):
        closure.make_optimizer()


def _broken(change):
    obj = json.loads(_trained()[3].dumps())
    change(obj)
    return obj


@pytest.mark.parametrize("change,path,words", [
    (lambda o: o.update(format_version=2), "format_version", "must be 1"),
    (lambda o: o.update(format="other"), "format", "'mlitb-closure'"),
    (lambda o: o.update(extra=1), "extra", "is not a closure field"),
    (lambda o: o["model"]["layers"][1].update(filters=0), "model.layers[1].filters", "positive integer"),
    (lambda o: o["model"].update(params=o["model"]["params"][:-8]), "model.params", "base64 of"),
    (lambda o: o["model"].update(params="%%%"), "model.params", "not valid base64"),
    (lambda o: o["model"].update(param_count=5), "model.param_count", "must be"),
    (lambda o: o.update(input_shape=[6, 5, 1]), "input_shape", "[5, 6, 1]"),
    (lambda o: o["normalization"].update(scale="x"), "normalization.scale", "finite number"),
    (lambda o: o.update(classes=["a", "b"]), "classes", "list of 3 class names"),
    (lambda o: o["optimizer"].update(name="rmsprop"), "optimizer.name", "adagrad, sgd, adam"),
    (lambda o: o["optimizer"]["hyper"].update(beta1=2), "optimizer.hyper", "'beta1' must be in [0, 1)"),
    (lambda o: o["optimizer"]["state"].pop("m"), "optimizer.state", "exactly ['m', 'v', 't']"),
    (lambda o: o["optimizer"]["state"].update(t=o["optimizer"]["state"]["m"]), "optimizer.state.t", "1 little-endian"),
    (lambda o: o["training"].update(iteration=-1), "training.iteration", "non-negative integer"),
    (lambda o: o["dataset"].update(shards=[1]), "dataset.shards", "shard hashes"),
    (lambda o: o.update(metrics=[3]), "metrics[0]", "must be an object"),
    (lambda o: o["software"].pop("version"), "software.version", "non-empty string"),
])
def test_bad_closure_names_the_field(change, path, words):
    with pytest.raises(ClosureError) as caught:
        load_closure(_broken(change))
    assert caught.value.path == path
    assert words in str(caught.value)


def test_not_json_is_reported():
    with pytest.raises(ClosureError, match="not valid JSON"):
        load_closure("{nope")
