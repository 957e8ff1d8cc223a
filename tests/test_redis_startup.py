"""Redis unreachable at start: both servers say so, naming the URL, and exit non-zero (no silent fallback)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e_system import _env
from tests.helpers import REPO, free_port


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mlitb.cli", *args], cwd=REPO, env=env or _env(),
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("command", [["serve", "--data-port", str(free_port())], ["data", "serve"]])
@pytest.mark.parametrize("how", ["flag", "environment"])
def test_unreachable_redis_is_a_clear_error_and_a_failure(tmp_path: Path, command: list[str], how: str):
    url = f"redis://127.0.0.1:{free_port()}/0"
    args = [*command, "--port", str(free_port()), "--data-dir", str(tmp_path / "data")]
    if how == "flag":
        done = _run(*args, "--redis", url)
    else:
        done = _run(*args, env={**_env(), "MLITB_REDIS_URL": url})
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"Redis at {url} is unreachable" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "data").exists(), "nothing may fall back to the file store"


def test_a_master_without_a_data_server_needs_to_be_told_where_one_is(tmp_path: Path):
    done = _run("serve", "--port", str(free_port()), "--data-port", "0", "--data-dir", str(tmp_path))
    assert done.returncode == 1
    assert "MLITB_DATA_URL" in done.stderr
