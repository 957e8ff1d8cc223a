"""One `mlitb serve` per data directory: a lock file that names the process holding it.

Two masters on the same file store would overwrite each other's checkpoints.
`flock` is released by the kernel when the process dies, however it dies, so
a stale lock file from a crash never blocks the next start.
"""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass, field
from pathlib import Path

LOCK_NAME = "serve.lock"


class LockHeld(Exception):
    """Another live process holds the lock; `pid` is the one it wrote (None if unreadable)."""

    def __init__(self, path: Path, pid: int | None) -> None:
        holder = f"PID {pid}" if pid else "another process"
        super().__init__(f"another mlitb serve ({holder}) is using the data directory {path.parent} "
                         f"(lock {path}): stop it first, or give this one another --data-dir")
        self.pid = pid


@dataclass
class DataDirLock:
    """An exclusive lock on `<data_dir>/serve.lock` holding this process's PID."""

    data_dir: Path
    _fd: int | None = field(default=None, repr=False)

    @property
    def path(self) -> Path:
        return Path(self.data_dir) / LOCK_NAME

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.pread(fd, 32, 0).decode(errors="replace").strip()
            os.close(fd)
            raise LockHeld(self.path, int(text) if text.isdigit() else None) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
