"""The committed parity vectors: the numpy engine reproduces them, and they are not stale."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mlitb.model import Net
from tests.vectors.make_vectors import CASES, make_vector, unb64

VECTORS = sorted((Path(__file__).parent / "vectors").glob("*.json"))


def _load(path: Path) -> tuple[dict, Net, np.ndarray, np.ndarray, np.ndarray]:
    v = json.loads(path.read_text())
    net = Net(v["layers"])
    params = unb64(v["params"])
    x = unb64(v["x"]).reshape((v["n"],) + net.input_shape)
    return v, net, params, x, np.array(v["labels"])


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))


def test_every_case_is_committed():
    assert sorted(p.stem for p in VECTORS) == sorted(CASES)


def test_vectors_cover_every_layer_type():
    types = {layer.type for path in VECTORS for layer in _load(path)[1].layers}
    assert types == {"input", "conv", "pool", "fc", "relu", "tanh", "sigmoid", "dropout", "softmax"}


@pytest.mark.parametrize("path", VECTORS, ids=lambda p: p.stem)
@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-6), (np.float32, 1e-4)])
def test_numpy_engine_matches_vector(path, dtype, tol):
    v, net, params, x, labels = _load(path)
    assert net.param_count == v["param_count"] == params.size
    expected = v["expected"]
    g = net.gradient(params.astype(dtype), x.astype(dtype), labels, seed=v["seed"])
    assert g.count == expected["count"] == v["n"]
    assert g.correct == expected["correct"]
    assert g.loss_sum == pytest.approx(expected["loss_sum"], rel=tol)
    assert _rel(g.grad_sum, unb64(expected["grad_sum"])) < tol
    probs = net.predict(params.astype(dtype), x.astype(dtype))
    assert _rel(probs.ravel(), unb64(expected["probs"])) < tol


@pytest.mark.parametrize("name", sorted(CASES))
def test_generator_reproduces_committed_vector(name):
    layers, n, seed = CASES[name]
    fresh = make_vector(name, layers, n, seed)
    committed = json.loads((Path(__file__).parent / "vectors" / f"{name}.json").read_text())
    for key in ("layers", "n", "seed", "params", "x", "labels"):
        assert fresh[key] == committed[key], key
    assert _rel(unb64(fresh["expected"]["grad_sum"]), unb64(committed["expected"]["grad_sum"])) < 1e-6
