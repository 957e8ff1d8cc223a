"""The whole project lifecycle from the command line, against a real one-port `mlitb serve`.

Every client command runs as its own process in the serve's directory and
finds the admin token in `var/admin-token`, as on a researcher's machine.
"""

from __future__ import annotations

import json
import signal
import stat
import subprocess

import numpy as np

from mlitb.cli.project import fit, parse_assignments, patch_body
from mlitb.model.zoo import MNIST_CONVNET
from tests.cli_support import Serve, cli, one_line_error
from tests.datazips import image_zip, png
from tests.helpers import poll_until
from tests.master_support import mnist_dir  # noqa: F401 (fixture)


def _json(done: subprocess.CompletedProcess):
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_templates_fit_the_dataset_and_set_splits_name_t_and_hyper_parameters():
    fitted = fit(MNIST_CONVNET, [32, 24, 3], 2)
    assert fitted[0] == {"type": "input", "out_sx": 24, "out_sy": 32, "out_depth": 3}
    assert fitted[-1] == {"type": "softmax", "num_classes": 2}
    assert MNIST_CONVNET[0]["out_depth"] == 1, "the template itself is left alone"
    values = parse_assignments(["learning_rate=0.01", "iteration_ms=400", "name=cats v2"])
    assert patch_body(values) == {"name": "cats v2", "iteration_ms": 400, "optimizer": {"learning_rate": 0.01}}


def test_the_project_lifecycle_from_the_cli(tmp_path, mnist_dir):  # noqa: F811
    serve = Serve(tmp_path / "home", ("--progress-every", "4")).start(mnist_dir)
    worker = None
    try:
        token_file = serve.home / "var" / "admin-token"
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        (demo,) = _json(serve.cli("project", "list", "--json"))
        assert demo["status"] == "running"

        created = _json(serve.cli("project", "create", "softmax", "--name", "cli softmax", "--iteration-ms", "300",
                                  "--eval-every", "2", "--set", "learning_rate=0.05", "--json"))
        assert (created["status"], created["param_count"], created["optimizer"]["learning_rate"]) == ("paused", 7850, 0.05)
        project = created["id"]
        assert _json(serve.cli("project", "start", project, "--json"))["status"] == "running"

        # Two running projects: a worker without --project says which exist instead of guessing.
        one_line_error(serve.cli("worker"), "2 running projects", "--project", project, demo["id"])
        assert _json(serve.cli("project", "pause", demo["id"], "--json"))["status"] == "paused"

        worker_log = serve.home / "worker.log"
        worker = subprocess.Popen([*serve.command, "worker", "--master", serve.url, "--cache-dir", str(tmp_path / "cache")],
                                  cwd=serve.home, env=serve.env, stdout=open(worker_log, "wb"), stderr=subprocess.STDOUT)
        metrics = serve.cli("project", "metrics", project, "--follow", "--count", "2", timeout=180)
        assert metrics.returncode == 0, metrics.stderr
        lines = metrics.stdout.splitlines()
        assert len(lines) == 2 and all("test accuracy" in line and "train loss" in line for line in lines), lines
        assert f"joining project {project}" in worker_log.read_text()

        shown = serve.cli("project", "show", project)
        assert "worker" in shown.stdout and "python" in shown.stdout, shown.stdout
        changed = _json(serve.cli("project", "set", project, "learning_rate=0.02", "iteration_ms=400", "--json"))
        assert (changed["optimizer"]["learning_rate"], changed["iteration_ms"]) == (0.02, 400)

        assert serve.cli("project", "closure", project, "-o", "model.closure.json").returncode == 0
        worker.send_signal(signal.SIGINT)
        assert worker.wait(timeout=60) == 0
        poll_until(lambda: "left" in serve.output(), timeout=30, what="serve logs that the worker left")

        (serve.home / "digit.png").write_bytes(png(np.zeros((28, 28), np.uint8)))
        predicted = cli(serve.home, "predict", "model.closure.json", "digit.png", "--top", "2")
        assert predicted.returncode == 0 and predicted.stdout.splitlines()[0] == "digit.png", predicted.stderr
        assert cli(serve.home, "export", "model.closure.json", "-o", "model.convnetjs.json").returncode == 0
        assert "layers" in json.loads((serve.home / "model.convnetjs.json").read_text())

        closure = json.loads((serve.home / "model.closure.json").read_text())
        resumed = _json(serve.cli("project", "create", "--from", "model.closure.json", "--json"))
        assert resumed["iteration"] == closure["training"]["iteration"] > 0
        assert serve.cli("project", "delete", resumed["id"]).returncode == 0
        assert resumed["id"] not in {p["id"] for p in _json(serve.cli("project", "list", "--json"))}

        zipped, more = serve.home / "pets.zip", serve.home / "more.zip"
        zipped.write_bytes(image_zip(classes=("cat", "dog"), per_class=6)[0])
        more.write_bytes(image_zip(classes=("cat", "dog"), per_class=2, seed=3)[0])
        pets = _json(serve.cli("data", "add", str(zipped), "--name", "pets", "--holdout", "0.5", "--json"))
        assert pets["id"] in {d["id"] for d in _json(serve.cli("data", "list", "--json"))}
        grown = _json(serve.cli("data", "append", pets["id"], str(more), "--json"))
        assert grown["splits"]["train"]["count"] == pets["splits"]["train"]["count"] + 4
        on_pets = _json(serve.cli("project", "create", "mlp", "--dataset", pets["id"], "--json"))
        assert on_pets["layers"][0]["out_depth"] == pets["shape"][2] and on_pets["layers"][-1]["num_classes"] == 2
        assert serve.cli("data", "delete", pets["id"]).returncode == 0
        assert pets["id"] not in {d["id"] for d in _json(serve.cli("data", "list", "--json"))}

        config = cli(serve.home, "config")
        assert config.returncode == 0 and "MLITB_PUBLIC_URL" in config.stdout and "MLITB_MAX_UPLOAD_BYTES" in config.stdout
    finally:
        if worker is not None and worker.poll() is None:
            worker.kill()
            worker.wait()
        output = serve.stop()
    print(output)
    # The serve log tells the story: the worker joined and left, the demo was paused, progress lines.
    assert "joined" in output and "left" in output and f"project {demo['id']} paused" in output
    assert f"project {project}: iteration " in output and "test accuracy" in output and "examples/s" in output
    assert "Traceback" not in output
