"""`mlitb serve` as a person runs it: first start, restart, signals, an unreachable Redis."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys

import httpx

from tests.helpers import REPO, free_port, wait_for_port
from tests.master_support import mnist_store_dir


def serve(data_dir, port: int, data_port: int, *extra: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in ("MLITB_ADMIN_TOKEN", "MLITB_REDIS_URL", "MLITB_DATA_URL")}
    return subprocess.Popen(
        [sys.executable, "-m", "mlitb.cli", "serve", "--port", str(port), "--data-port", str(data_port),
         "--data-dir", str(data_dir), *extra],
        cwd=REPO, env={**env, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def stop(proc: subprocess.Popen, sig: signal.Signals) -> str:
    proc.send_signal(sig)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, output
    return output


def test_first_start_makes_a_demo_and_a_token_and_a_restart_keeps_them(tmp_path_factory, tmp_path):
    data_dir = tmp_path / "var"
    shutil.copytree(mnist_store_dir(tmp_path_factory), data_dir)
    port, data_port = free_port(), free_port()
    proc = serve(data_dir, port, data_port)
    try:
        wait_for_port(port, timeout=120, process=proc)
        projects = httpx.get(f"http://127.0.0.1:{port}/api/projects").json()
        config = httpx.get(f"http://127.0.0.1:{port}/api/config").json()
    finally:
        first = stop(proc, signal.SIGTERM)
    assert [(p["name"], p["status"], p["param_count"]) for p in projects] == [("MNIST demo", "running", 5994)]
    assert projects[0]["optimizer"]["name"] == "adagrad" and 1000 <= projects[0]["iteration_ms"] <= 2000
    assert config == {"version": config["version"], "data_url": f"http://127.0.0.1:{data_port}",
                      "default_project": projects[0]["id"]}
    token = next(line.split()[-1] for line in first.splitlines() if "admin token (shown once" in line)
    assert f"master at http://127.0.0.1:{port}/" in first

    proc = serve(data_dir, port, data_port)
    try:
        wait_for_port(port, timeout=120, process=proc)
        again = httpx.get(f"http://127.0.0.1:{port}/api/projects").json()
        headers = {"Authorization": f"Bearer {token}"}
        paused = httpx.post(f"http://127.0.0.1:{port}/api/projects/{projects[0]['id']}/pause", headers=headers)
    finally:
        second = stop(proc, signal.SIGINT)
    assert [p["id"] for p in again] == [projects[0]["id"]]
    assert paused.status_code == 200 and paused.json()["status"] == "paused"
    assert token not in second and "admin token" in second


def test_an_unreachable_redis_is_a_clear_error(tmp_path):
    port = free_port()
    proc = serve(tmp_path, free_port(), free_port(), "--redis", f"redis://127.0.0.1:{port}/0")
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert f"Redis at redis://127.0.0.1:{port}/0 is unreachable" in output
    assert "Traceback" not in output
