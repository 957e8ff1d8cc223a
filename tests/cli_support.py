"""`mlitb` as a person runs it from a shell: a `serve` process in a directory of its own, and commands.

The serve process runs in `home`, with its state in `home/var` (the default
data directory), so client commands run from `home` find the admin token in
`var/admin-token` as they would on the researcher's machine. `command`
selects the program: `python -m mlitb.cli` from this checkout, or an
installed `mlitb` (the wheel test).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from tests.helpers import REPO, free_port, wait_for_port

CHECKOUT = [sys.executable, "-m", "mlitb.cli"]


def clean_env(**extra: str) -> dict[str, str]:
    """The environment of a fresh shell: no MLITB_* settings, one BLAS thread, unbuffered output."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLITB_")}
    return {**env, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **extra}


def cli(home: Path, *args: str, command: list[str] = CHECKOUT, env: dict[str, str] | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess:
    """Run one `mlitb ...` command in `home` and wait for it."""
    return subprocess.run([*command, *args], cwd=home, env=env or clean_env(), capture_output=True, text=True,
                          timeout=timeout, check=False)


def one_line_error(done: subprocess.CompletedProcess, *parts: str) -> str:
    """The failed command's only stderr line, checked to hold every part and no traceback."""
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 1, (done.returncode, done.stdout, done.stderr)
    assert len(lines) == 1, done.stderr
    for part in parts:
        assert part in lines[0], (part, lines[0])
    return lines[0]


@dataclass
class Serve:
    """`mlitb serve` in `home` on a free port, started from a copy of an ingested store when given one."""

    home: Path
    args: tuple[str, ...] = ()
    command: list[str] = field(default_factory=lambda: list(CHECKOUT))
    port: int = field(default_factory=free_port)
    env: dict[str, str] = field(default_factory=clean_env)
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.home / "serve.log"

    def start(self, store: Path | None = None, timeout: float = 120) -> Serve:
        self.home.mkdir(parents=True, exist_ok=True)
        if store is not None and not (self.home / "var").exists():
            shutil.copytree(store, self.home / "var")
        self.proc = subprocess.Popen([*self.command, "serve", "--port", str(self.port), *self.args], cwd=self.home,
                                     env=self.env, stdout=open(self.log, "wb"), stderr=subprocess.STDOUT)  # noqa: SIM115 (the child keeps it)
        wait_for_port(self.port, timeout=timeout, process=self.proc)
        return self

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> str:
        """SIGTERM; the whole output. A clean stop exits 0."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.output()

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        """A client command run in this serve's directory, against this serve."""
        return cli(self.home, *args, "--master", self.url, command=self.command, env=self.env, timeout=timeout)
