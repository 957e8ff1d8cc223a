"""A new class grows a running project with a real `mlitb worker` connected (issue 15): `mlitb serve`
and the worker are processes; the worker is told to reconnect, rebuilds its net from the new `welcome`
and trains the grown net; the closure records when the class appeared and verifies."""

from __future__ import annotations

import httpx
import numpy as np

from mlitb.closure import load_closure
from mlitb.master.closure_verify import verify_with_server
from tests.datazips import make_zip, png
from tests.e2e_system import ProcessSystem
from tests.helpers import ADMIN, poll_until

OPTIMIZER = {"name": "adam", "learning_rate": 0.003}


def test_a_python_worker_follows_a_growing_net(process_system: ProcessSystem):
    system = process_system
    project_id = system.create_project(iteration_ms=400, optimizer=OPTIMIZER,
                                       layers=[{"type": "input", "out_sx": 28, "out_sy": 28, "out_depth": 1},
                                               {"type": "softmax", "num_classes": 10}])
    worker = system.start_worker(project_id)
    poll_until(lambda: system.worker_stats(project_id)[worker.id]["accepted"] >= 2, timeout=120,
               what="the worker contributes")
    before = system.project(project_id)
    dataset = before["dataset"]
    rng = np.random.default_rng(2)
    upload = make_zip({f"new/star/{i}.png": png(rng.integers(0, 256, (28, 28), dtype=np.uint8)) for i in range(30)})
    response = httpx.post(f"http://127.0.0.1:{system.data_port}/datasets/{dataset}/examples",
                          files={"zip": ("star.zip", upload, "application/zip")}, params={"new_classes": "1"},
                          headers=ADMIN, timeout=60)
    assert response.status_code == 200, response.text

    def grown_and_training() -> dict | None:
        project = system.project(project_id)
        trainers = [w for w in project["workers"] if w["id"] != worker.id and w["accepted"] >= 2]
        return project if project["param_count"] == before["param_count"] + 785 and trainers else None

    grown = poll_until(grown_and_training, timeout=120, what="the net grows and the worker trains it again")
    assert grown["layers"][-1]["num_classes"] == 11
    assert worker.proc.poll() is None, "the worker must reconnect, not exit"
    assert "master says reconnect" in worker.log.read_text()
    system.api("POST", f"/api/projects/{project_id}/pause")
    closure = load_closure(httpx.get(f"{system.url}/api/projects/{project_id}/closure", timeout=60).text)
    assert closure.classes[-1] == "star" and closure.training.class_since[:10] == [0] * 10
    assert 0 < closure.training.class_since[10] < closure.training.iteration
    report = verify_with_server(closure, f"http://127.0.0.1:{system.data_port}")
    assert report.ok, report.text()
