"""`mlitb serve` with a chosen store and checkpoint period, killable, and its stored checkpoint read back.

Builds on tests/e2e_system.py (real processes on loopback, observed through the
HTTP API); adds what persistence tests need: `--redis`, `--checkpoint-every`,
`kill -9`, and reading the checkpoint straight from the store the master
used, as a restarted master would.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from dataclasses import dataclass

from mlitb.master.checkpoint import Checkpoint
from mlitb.master.registry import checkpoint_key
from mlitb.model.zoo import MNIST_SOFTMAX
from mlitb.store import FileStore, RedisStore, Store
from tests.e2e_system import ProcessSystem, _env
from tests.helpers import REPO, wait_for_port

# Softmax regression on MNIST: learns within a few iterations, a gradient in milliseconds.
TINY_LAYERS = MNIST_SOFTMAX


@dataclass
class StoredSystem(ProcessSystem):
    """A ProcessSystem whose master runs on `redis_url` (or the file store) and checkpoints every `checkpoint_every`."""

    redis_url: str | None = None
    checkpoint_every: int = 5

    def start(self) -> None:
        self.starts += 1
        log = open(self.tmp / f"serve-{self.starts}.log", "wb")
        store = ["--redis", self.redis_url] if self.redis_url else []
        self.server = subprocess.Popen(
            [sys.executable, "-m", "mlitb.cli", "serve", "--port", str(self.port), "--data-port", str(self.data_port),
             "--data-dir", str(self.tmp / "data"), "--checkpoint-every", str(self.checkpoint_every), *store],
            cwd=REPO, env=_env(), stdout=log, stderr=subprocess.STDOUT,
        )
        wait_for_port(self.port, timeout=60, process=self.server)
        wait_for_port(self.data_port, timeout=60, process=self.server)

    def kill_server(self) -> None:
        """SIGKILL: no checkpoint, no goodbye; whatever the store holds is all that survives."""
        assert self.server is not None
        self.server.kill()
        self.server.wait(timeout=30)

    def stored_checkpoint(self, project_id: str) -> Checkpoint | None:
        """The checkpoint as a new master would load it, read by a fresh client of the same store."""

        async def read() -> bytes | None:
            store: Store = RedisStore(self.redis_url) if self.redis_url else FileStore(self.tmp / "data")
            try:
                return await store.get(checkpoint_key(project_id))
            finally:
                await store.close()

        raw = asyncio.run(read())
        return Checkpoint.decode(raw) if raw else None

    def log(self, start: int) -> str:
        return (self.tmp / f"serve-{start}.log").read_text(errors="replace")
