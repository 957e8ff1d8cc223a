"""`mlitb predict` and `mlitb export`: through the real CLI, and the export loaded by ConvNetJS itself."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
from PIL import Image

from mlitb.cli import main
from mlitb.closure import Normalization, build_closure
from mlitb.model import Net
from mlitb.optim import make_optimizer
from tests.helpers import REPO

# every layer type ConvNetJS shares with us, non-square depth-3 input, stride, pad, overlapping padded pool
LAYERS = [
    {"type": "input", "out_sx": 9, "out_sy": 7, "out_depth": 3},
    {"type": "conv", "sx": 3, "filters": 4, "stride": 2, "pad": 1, "activation": "relu", "l1_decay_mul": 0.5},
    {"type": "pool", "sx": 3, "stride": 1, "pad": 1},
    {"type": "conv", "sx": 2, "sy": 3, "filters": 3, "activation": "tanh"},
    {"type": "fc", "num_neurons": 6, "activation": "sigmoid"},
    {"type": "fc", "num_neurons": 5},
    {"type": "relu"},
    {"type": "softmax", "num_classes": 4},
]
CLASSES = ["ant", "bee", "cat", "dog"]

CONVNETJS_PREDICT = """
const convnetjs = require("convnetjs");
let input = "";
process.stdin.on("data", (chunk) => { input += chunk; });
process.stdin.on("end", () => {
  const { net: json, shape: [sx, sy, depth], inputs } = JSON.parse(input);
  const net = new convnetjs.Net();
  net.fromJSON(json);
  const out = inputs.map((w) => {
    const vol = new convnetjs.Vol(sx, sy, depth, 0.0);
    for (let i = 0; i < w.length; i++) vol.w[i] = w[i];
    return Array.from(net.forward(vol, false).w);
  });
  process.stdout.write(JSON.stringify(out));
});
"""


def _trained_closure(layers, tmp_path, normalization=Normalization()):
    """A few real training steps so weights and biases are all non-trivial."""
    net = Net(layers)
    params = net.init_params(3)
    opt = make_optimizer("adagrad", {"learning_rate": 0.05, "l2_decay": 0.001}, net.layout)
    rng = np.random.default_rng(0)
    for _ in range(5):
        x = rng.normal(size=(8,) + net.input_shape).astype(np.float32)
        g = net.gradient(params, x, rng.integers(0, net.num_classes, 8), seed=1)
        opt.step(params, g.grad_sum, g.count)
    closure = build_closure(net, params, CLASSES[:net.num_classes], optimizer=opt, normalization=normalization)
    path = tmp_path / "closure.json"
    path.write_text(closure.dumps())
    return net, params, path


def _export(closure_path, tmp_path):
    out = tmp_path / "convnetjs.json"
    assert main(["export", str(closure_path), "--format", "convnetjs", "-o", str(out)]) == 0
    return json.loads(out.read_text())


def _convnetjs_predict(exported, net, x):
    sy, sx, depth = net.input_shape
    request = {"net": exported, "shape": [sx, sy, depth], "inputs": [row.tolist() for row in x.reshape(len(x), -1)]}
    done = subprocess.run(["node", "-e", CONVNETJS_PREDICT], input=json.dumps(request), capture_output=True,
                          text=True, cwd=REPO, check=True, timeout=60)
    return np.array(json.loads(done.stdout))


def test_convnetjs_loads_the_export_and_predicts_the_same(tmp_path):
    net, params, closure_path = _trained_closure(LAYERS, tmp_path)
    exported = _export(closure_path, tmp_path)
    assert [layer["layer_type"] for layer in exported["layers"]] == [
        "input", "conv", "relu", "pool", "conv", "tanh", "fc", "sigmoid", "fc", "relu", "fc", "softmax"]
    conv = exported["layers"][1]
    assert (conv["sx"], conv["sy"], conv["stride"], conv["pad"], conv["in_depth"]) == (3, 3, 2, 1, 3)
    assert conv["l1_decay_mul"] == 0.5 and len(conv["filters"]) == 4
    assert conv["filters"][0]["w"]["0"] == float(params[0])  # filters are a copy of the flat vector
    x = np.random.default_rng(9).normal(size=(5,) + net.input_shape)
    ours = net.predict(params.astype(np.float64), x)
    theirs = _convnetjs_predict(exported, net, x)
    assert np.abs(theirs - ours).max() < 1e-5
    assert np.array_equal(theirs.argmax(axis=1), ours.argmax(axis=1))


def test_export_leaves_dropout_out_so_predictions_still_match(tmp_path):
    layers = [LAYERS[0], {"type": "conv", "sx": 3, "filters": 2, "activation": "relu", "drop_prob": 0.5},
              {"type": "fc", "num_neurons": 5, "drop_prob": 0.3}, {"type": "softmax", "num_classes": 3}]
    net, params, closure_path = _trained_closure(layers, tmp_path)
    exported = _export(closure_path, tmp_path)
    assert "dropout" not in [layer["layer_type"] for layer in exported["layers"]]
    x = np.random.default_rng(2).normal(size=(3,) + net.input_shape)
    assert np.abs(_convnetjs_predict(exported, net, x) - net.predict(params.astype(np.float64), x)).max() < 1e-5


def test_export_to_standard_output(tmp_path, capsys):
    _, _, closure_path = _trained_closure(LAYERS, tmp_path)
    assert main(["export", str(closure_path)]) == 0
    assert json.loads(capsys.readouterr().out)["layers"][0] == {
        "out_depth": 3, "out_sx": 9, "out_sy": 7, "layer_type": "input"}


def test_predict_prints_top_classes_of_each_image(tmp_path, capsys):
    grey = [{"type": "input", "out_sx": 6, "out_sy": 5, "out_depth": 1}] + LAYERS[1:]
    norm = Normalization(scale=2 / 255, offset=-1.0)
    net, params, closure_path = _trained_closure(grey, tmp_path, normalization=norm)
    rng = np.random.default_rng(4)
    colour = tmp_path / "colour.png"  # RGB and larger: converted to grey and resized
    Image.fromarray(rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)).save(colour)
    small = tmp_path / "small.png"
    Image.fromarray(rng.integers(0, 256, (5, 6), dtype=np.uint8)).save(small)
    assert main(["predict", str(closure_path), str(colour), str(small), "--top", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    expected_pixels = [
        np.asarray(Image.open(colour).convert("L").resize((6, 5), Image.Resampling.BILINEAR)),
        np.asarray(Image.open(small)),
    ]
    x = np.stack(expected_pixels).reshape(2, 5, 6, 1).astype(np.float32) * np.float32(2 / 255) - 1
    probs = net.predict(params, x)
    assert len(lines) == 6
    for block, p in zip((lines[0:3], lines[3:6]), probs):
        order = np.argsort(-p)[:2]
        assert block[1].split() == ["1.", CLASSES[order[0]], f"{p[order[0]]:.6f}"]
        assert block[2].split() == ["2.", CLASSES[order[1]], f"{p[order[1]]:.6f}"]
    assert lines[0] == str(colour) and lines[3] == str(small)


def test_predict_reports_a_bad_closure_and_a_bad_image(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": "mlitb-closure", "format_version": 9}))
    assert main(["predict", str(bad), "x.png"]) == 1
    assert "format_version: must be 1" in capsys.readouterr().err
    _, _, closure_path = _trained_closure(LAYERS, tmp_path)
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    assert main(["predict", str(closure_path), str(text)]) == 1
    assert "not an image" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["export", "missing.json"], ["predict", "missing.json", "a.png"]])
def test_missing_closure_file(argv, capsys):
    assert main(argv) == 1
    assert "cannot read missing.json" in capsys.readouterr().err
