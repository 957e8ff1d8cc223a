"""The tests' one way to run redis-server: private, on a free loopback port; it can be stopped and started
again on the same port (a Redis outage, for real)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from tests.helpers import free_port, wait_for_port


@dataclass
class RedisProcess:
    """`stop` kills the server (its data is gone unless `persist`); `start` brings it back on `port`."""

    port: int = field(default_factory=free_port)
    persist: bool = True  # append-only file, fsync'ed: what was acknowledged survives `stop`
    workdir: str = field(default_factory=lambda: tempfile.mkdtemp(prefix="mlitb-redis-"))
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed: run scripts/test.sh, which installs it")
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             *(["--appendonly", "yes", "--appendfsync", "always"] if self.persist else ["--appendonly", "no"]),
             "--dir", self.workdir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port, process=self.proc)

    def stop(self) -> None:
        """SIGKILL: Redis vanishes as in a crash; the append-only file keeps what was acknowledged."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


@contextmanager
def redis_process(persist: bool = True) -> Iterator[RedisProcess]:
    server = RedisProcess(persist=persist)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.workdir, ignore_errors=True)


@contextmanager
def redis_server() -> Iterator[str]:
    """The URL of a private redis-server for a whole session (or MLITB_TEST_REDIS_URL)."""
    external = os.environ.get("MLITB_TEST_REDIS_URL")
    if external:
        yield external
        return
    with redis_process(persist=False) as server:
        yield server.url
