"""Every `mlitb` sub-command's happy path against a running serve, in the order a researcher uses them.

Shared by tests/test_cli_project.py (this checkout) and tests/test_wheel.py
(an installed wheel), so both run exactly the same commands.
"""

from __future__ import annotations

import json
import signal
import stat
import subprocess
from pathlib import Path

import numpy as np

from tests.cli_support import Serve, cli, one_line_error
from tests.datazips import image_zip, png
from tests.helpers import free_port, poll_until, wait_for_port


def _json(done: subprocess.CompletedProcess):
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def run_every_command(serve: Serve, scratch: Path) -> str:
    """Run them all; the serve's whole output (stopped at the end), its story checked."""

    def local(*args: str) -> subprocess.CompletedProcess:
        return cli(serve.home, *args, command=serve.command, env=serve.env)

    worker = None
    try:
        token_file = serve.home / "var" / "admin-token"
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        (demo,) = _json(serve.cli("project", "list", "--json"))
        assert demo["status"] == "running"

        created = _json(serve.cli("project", "create", "softmax", "--name", "cli softmax", "--iteration-ms", "300",
                                  "--eval-every", "2", "--set", "learning_rate=0.05", "--aggregation", "mean",
                                  "--description", "softmax from the CLI", "--json"))
        assert (created["status"], created["param_count"], created["optimizer"]["learning_rate"]) == ("paused", 7850, 0.05)
        assert (created["aggregation"], created["description"]) == ("mean", "softmax from the CLI")
        project = created["id"]
        assert _json(serve.cli("project", "start", project, "--json"))["status"] == "running"

        # Two running projects: a worker without --project says which exist instead of guessing.
        one_line_error(serve.cli("worker"), "2 running projects", "--project", project, demo["id"])
        assert _json(serve.cli("project", "pause", demo["id"], "--json"))["status"] == "paused"

        worker_log = serve.home / "worker.log"
        worker = subprocess.Popen([*serve.command, "worker", "--master", serve.url, "--cache-dir", str(scratch / "cache")],
                                  cwd=serve.home, env=serve.env, stdout=open(worker_log, "wb"), stderr=subprocess.STDOUT)  # noqa: SIM115
        metrics = serve.cli("project", "metrics", project, "--follow", "--count", "2", timeout=180)
        assert metrics.returncode == 0, metrics.stderr
        lines = metrics.stdout.splitlines()
        assert len(lines) == 2 and all("test accuracy" in line and "train loss" in line for line in lines), lines
        assert f"joining project {project}" in worker_log.read_text()

        shown = serve.cli("project", "show", project)
        assert "worker" in shown.stdout and "python" in shown.stdout, shown.stdout
        changed = _json(serve.cli("project", "set", project, "learning_rate=0.02", "iteration_ms=400",
                                  "aggregation=centered_clip", "--json"))
        assert (changed["optimizer"]["learning_rate"], changed["iteration_ms"], changed["aggregation"]) == \
            (0.02, 400, "centered_clip")

        assert serve.cli("project", "closure", project, "-o", "model.closure.json").returncode == 0
        worker.send_signal(signal.SIGINT)
        assert worker.wait(timeout=60) == 0
        poll_until(lambda: "left" in serve.output(), timeout=30, what="serve logs that the worker left")

        (serve.home / "digit.png").write_bytes(png(np.zeros((28, 28), np.uint8)))
        predicted = local("predict", "model.closure.json", "digit.png", "--top", "2")
        assert predicted.returncode == 0 and predicted.stdout.splitlines()[0] == "digit.png", predicted.stderr
        assert local("export", "model.closure.json", "-o", "model.convnetjs.json").returncode == 0
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
        one_line_error(serve.cli("project", "create", "--dataset", pets["id"]), "the convnet template does not fit pets", "mlp")
        on_pets = _json(serve.cli("project", "create", "mlp", "--dataset", pets["id"], "--json"))
        assert on_pets["layers"][0]["out_depth"] == pets["shape"][2] and on_pets["layers"][-1]["num_classes"] == 2
        assert serve.cli("data", "delete", pets["id"]).returncode == 0
        assert pets["id"] not in {d["id"] for d in _json(serve.cli("data", "list", "--json"))}

        config = local("config")
        assert config.returncode == 0 and "MLITB_PUBLIC_URL" in config.stdout and "MLITB_MAX_UPLOAD_BYTES" in config.stdout
        version = local("--version")
        assert version.returncode == 0 and version.stdout.startswith("mlitb "), version.stderr
        _data_serve_alone(serve, scratch)
    finally:
        if worker is not None and worker.poll() is None:
            worker.kill()
            worker.wait()
        output = serve.stop()
    # The serve log tells the story: the worker joined and left, the demo was paused, progress lines.
    assert "joined" in output and "left" in output and f"project {demo['id']} paused" in output
    assert f"project {project}: iteration " in output and "test accuracy" in output and "examples/s" in output
    assert "Traceback" not in output
    return output


def _data_serve_alone(serve: Serve, scratch: Path) -> None:
    """`mlitb data serve` on its own port and data directory: it ingests MNIST and answers, then stops cleanly."""
    port = free_port()
    env = {**serve.env, "MLITB_ADMIN_TOKEN": "data-token"}
    proc = subprocess.Popen([*serve.command, "data", "serve", "--port", str(port), "--data-dir", str(scratch / "data-alone")],
                            cwd=serve.home, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for_port(port, timeout=120, process=proc)
        listed = cli(serve.home, "data", "list", "--server", f"http://127.0.0.1:{port}", "--json",
                     command=serve.command, env=serve.env)
        assert [d["name"] for d in _json(listed)] == ["mnist"]
    finally:
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0 and "Traceback" not in output, output
