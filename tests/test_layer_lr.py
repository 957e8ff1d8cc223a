"""Per-layer learning-rate multipliers: every optimizer honours them, and a master applies them live."""

from __future__ import annotations

import numpy as np
import pytest

from mlitb.closure import build_closure, load_closure
from mlitb.model import Net
from mlitb.model.layout import lr_multipliers
from mlitb.optim import OPTIMIZERS, make_optimizer
from tests.master_support import ADMIN, trainer

LAYERS = [
    {"type": "input", "out_sx": 4, "out_sy": 4, "out_depth": 1},
    {"type": "conv", "sx": 3, "filters": 2, "pad": 1, "activation": "relu"},
    {"type": "fc", "num_neurons": 5, "activation": "tanh"},
    {"type": "softmax", "num_classes": 3},
]
HIDDEN = [{"type": "input", "out_sx": 28, "out_sy": 28, "out_depth": 1},
          {"type": "fc", "num_neurons": 12, "activation": "relu"},
          {"type": "softmax", "num_classes": 10}]


def _blocks_of(net: Net, definition_index: int) -> list[slice]:
    return [slice(b.offset, b.offset + b.size) for b in net.layout if net.layers[b.layer].index == definition_index]


def test_multipliers_follow_the_layer_definitions_a_softmax_covers_its_fc():
    net = Net(LAYERS)
    mul = lr_multipliers(net.layers, net.layout, [1, 0, 0.5, 2])
    for index, value in ((1, 0), (2, 0.5), (3, 2)):
        for block in _blocks_of(net, index):
            assert (mul[block] == value).all()
    assert mul.size == net.param_count


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_every_optimizer_freezes_a_zero_layer_bit_for_bit_and_a_one_changes_nothing(name):
    net = Net(LAYERS)
    rng = np.random.default_rng(0)
    x, labels = rng.random((8, 4, 4, 1), dtype=np.float32), rng.integers(0, 3, 8)
    hyper = {"learning_rate": 0.05, "l2_decay": 0.01}
    plain, ones, frozen = (make_optimizer(name, hyper, net.layout) for _ in range(3))
    ones.set_lr_multipliers(lr_multipliers(net.layers, net.layout, [1, 1, 1, 1]))
    frozen.set_lr_multipliers(lr_multipliers(net.layers, net.layout, [1, 0, 1, 0.5]))
    start = net.init_params(1)
    p_plain, p_ones, p_frozen = start.copy(), start.copy(), start.copy()
    for _ in range(3):
        for opt, p in ((plain, p_plain), (ones, p_ones), (frozen, p_frozen)):
            g = net.gradient(p, x, labels)
            opt.step(p, g.grad_sum, g.count)
    assert np.array_equal(p_plain, p_ones)
    for block in _blocks_of(net, 1):
        assert np.array_equal(p_frozen[block], start[block])
    for block in _blocks_of(net, 2):
        assert not np.array_equal(p_frozen[block], start[block])


def test_the_closure_carries_the_multipliers_and_its_optimizer_applies_them():
    net = Net(LAYERS)
    opt = make_optimizer("sgd", {}, net.layout)
    closure = load_closure(build_closure(net, net.init_params(0), ["a", "b", "c"], optimizer=opt,
                                         lr_multipliers=[1, 0, 1, 1]).dumps())
    assert closure.optimizer.lr_multipliers == [1, 0, 1, 1]
    resumed = closure.make_optimizer()
    assert resumed.lr_mul is not None and (resumed.lr_mul[_blocks_of(net, 1)[0]] == 0).all()
    obj = closure.to_json()
    obj["optimizer"]["lr_multipliers"] = [1, -1, 1, 1]
    with pytest.raises(ValueError, match="optimizer.lr_multipliers: must be a list of 4 numbers >= 0"):
        load_closure(obj)


@pytest.mark.parametrize(("value", "field", "words"), [
    ([1, 1], "lr_multipliers", "list of 3 numbers"),
    ([1, -0.5, 1], "lr_multipliers[1]", "from 0 (frozen) to 100"),
    ([1, "x", 1], "lr_multipliers[1]", "from 0 (frozen) to 100"),
])
async def test_bad_multipliers_get_a_400_naming_the_entry(system, value, field, words):
    project = await system.create_project(layers=HIDDEN, status="paused")
    response = await system.api.patch(f"/api/projects/{project['id']}", json={"lr_multipliers": value}, headers=ADMIN)
    assert response.status_code == 400 and response.json()["field"] == field and words in response.json()["error"]
    body = {"name": "x", "dataset": system.dataset["id"], "layers": HIDDEN, "lr_multipliers": value}
    response = await system.api.post("/api/projects", json=body, headers=ADMIN)
    assert response.status_code == 400 and response.json()["field"] == field


async def test_freezing_a_layer_live_keeps_its_parameters_bit_identical_while_the_rest_trains(system):
    project = await system.create_project(layers=HIDDEN, iteration_ms=2000,
                                          optimizer={"name": "adam", "learning_rate": 0.01})
    pid = project["id"]
    assert project["lr_multipliers"] == [1, 1, 1]
    net = Net(HIDDEN)
    hidden, head = _blocks_of(net, 1), _blocks_of(net, 2)
    async with trainer(system, pid) as client:
        await client.send(client.compute(await client.expect("work")))
        patched = await system.api.patch(f"/api/projects/{pid}", json={"lr_multipliers": [1, 0, 1]}, headers=ADMIN)
        assert patched.status_code == 200 and patched.json()["lr_multipliers"] == [1, 0, 1]
        work = await client.expect("work")
        frozen_at = client.params[work["iteration"]].copy()
        for _ in range(3):
            await client.send(client.compute(work))
            work = await client.expect("work")
        after = client.params[work["iteration"]]
    for block in hidden:
        assert np.array_equal(after[block], frozen_at[block])
    for block in head:
        assert not np.array_equal(after[block], frozen_at[block])
    closure = load_closure((await system.api.get(f"/api/projects/{pid}/closure")).text)
    assert closure.optimizer.lr_multipliers == [1, 0, 1]
