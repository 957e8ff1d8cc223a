"""Transfer learning end to end: `mlitb serve` and `mlitb worker` processes, a new head on other classes,
a frozen hidden layer that stays bit-identical while a real worker trains the rest."""

from __future__ import annotations

import httpx
import numpy as np

from mlitb.closure import load_closure
from mlitb.master.closure_verify import verify_with_server
from mlitb.model import Net
from tests.datazips import image_zip, mnist_digits_zip
from tests.e2e_system import ProcessSystem
from tests.helpers import ADMIN, poll_until

HIDDEN = [{"type": "input", "out_sx": 28, "out_sy": 28, "out_depth": 1},
          {"type": "fc", "num_neurons": 16, "activation": "relu"},
          {"type": "softmax", "num_classes": 10}]
OPTIMIZER = {"name": "adam", "learning_rate": 0.003}


def upload(system: ProcessSystem, name: str, train: bytes, test: bytes | None = None) -> dict:
    files = {"train": ("train.zip", train, "application/zip")}
    if test is not None:
        files["test"] = ("test.zip", test, "application/zip")
    response = httpx.post(f"http://127.0.0.1:{system.data_port}/datasets", files=files, params={"name": name},
                          headers=ADMIN, timeout=120)
    assert response.status_code == 201, response.text
    return response.json()


def closure_of(system: ProcessSystem, project_id: str):
    return load_closure(httpx.get(f"{system.url}/api/projects/{project_id}/closure", timeout=60).text)


def train_until(system: ProcessSystem, project_id: str, iterations: int) -> None:
    worker = system.start_worker(project_id)
    poll_until(lambda: system.worker_stats(project_id)[worker.id]["accepted"] >= iterations, timeout=180,
               what=f"the worker contributes {iterations} results")
    system.api("POST", f"/api/projects/{project_id}/pause")


def test_transfer_with_a_new_head_and_a_frozen_layer(process_system: ProcessSystem):
    system = process_system
    source = system.create_project(name="digits", layers=HIDDEN, iteration_ms=400, optimizer=OPTIMIZER)
    train_until(system, source, 4)
    trained = closure_of(system, source)

    five = upload(system, "digits 0-4", mnist_digits_zip("train", tuple("01234")), mnist_digits_zip("test", tuple("01234")))
    body = {"name": "transfer", "dataset": five["id"], "from": source, "head": "replace", "iteration_ms": 400,
            "optimizer": OPTIMIZER, "lr_multipliers": [1, 0, 1], "status": "running", "eval_every": 2, "seed": 3}
    created = httpx.post(f"{system.url}/api/projects", json=body, headers=ADMIN, timeout=60)
    assert created.status_code == 201, created.text
    project = created.json()
    assert project["iteration"] == 0 and project["steps"] == 0 and project["layers"][-1]["num_classes"] == 5
    start = closure_of(system, project["id"])
    net = Net(project["layers"])
    hidden = [b for b in net.layout if net.layers[b.layer].index == 1]
    head = [b for b in net.layout if net.layers[b.layer].index == 2]
    old_net = trained.net()
    for block in hidden:  # same offsets: only the head after them changed size
        assert np.array_equal(start.params[block.offset:block.offset + block.size],
                              trained.params[block.offset:block.offset + block.size])
    expected_head = Net(project["layers"]).init_params(3)
    for block in head:
        assert np.array_equal(start.params[block.offset:block.offset + block.size],
                              expected_head[block.offset:block.offset + block.size])
    assert old_net.param_count - net.param_count == 5 * 17  # five fewer outputs, 16 weights and a bias each

    train_until(system, project["id"], 4)
    after = closure_of(system, project["id"])
    assert after.training.steps >= 4 and after.classes == five["classes"]
    for block in hidden:
        assert np.array_equal(after.params[block.offset:block.offset + block.size],
                              trained.params[block.offset:block.offset + block.size]), "a frozen layer moved"
    for closure in (trained, start, after):  # every closure of this test reproduces its test figures
        report = verify_with_server(closure, f"http://127.0.0.1:{system.data_port}")
        assert report.ok, report.text()
    weights = head[0]
    assert not np.array_equal(after.params[weights.offset:weights.offset + weights.size],
                              start.params[weights.offset:weights.offset + weights.size])


def test_transfer_refusals_say_what_to_do(process_system: ProcessSystem):
    system = process_system
    source = system.create_project(name="digits", layers=HIDDEN, status="paused")
    tiny = upload(system, "tiny", image_zip(height=5, width=6, per_class=4)[0])

    def create(**fields) -> httpx.Response:
        body = {"name": "t", "dataset": tiny["id"], "from": source, "head": "replace", **fields}
        return httpx.post(f"{system.url}/api/projects", json=body, headers=ADMIN, timeout=60)

    wrong_shape = create()
    assert wrong_shape.status_code == 400 and wrong_shape.json()["field"] == "dataset"
    assert "28x28x1 inputs" in wrong_shape.json()["error"] and "--size 28x28 --channels 1" in wrong_shape.json()["error"]
    assert create(head="keep").json()["field"] == "head"
    assert create(layers=HIDDEN).json()["field"] == "layers"
    assert create(**{"from": "nope"}).json()["field"] == "from"
    bad = closure_of(system, source).to_json()
    bad["model"]["param_count"] = 1
    assert create(**{"from": bad}).json()["field"] == "from.model.param_count"
    mnist = system.project(source)["dataset"]
    kept = httpx.post(f"{system.url}/api/projects", json={"name": "k", "dataset": mnist, "from": source},
                      headers=ADMIN, timeout=60)
    assert kept.status_code == 201, kept.text  # no head: every layer kept, the same ten classes
