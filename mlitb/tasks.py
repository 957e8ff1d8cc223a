"""Background asyncio tasks that fail loudly: a crash is logged with its traceback, never lost silently."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable


def log_crash(logger: logging.Logger, what: str | None = None) -> Callable[[asyncio.Task], None]:
    """A done-callback that logs a task's exception (`what` names it; else the task's name)."""

    def callback(task: asyncio.Task) -> None:
        if not task.cancelled() and task.exception() is not None:
            logger.error("%s failed", what or f"task {task.get_name()}", exc_info=task.exception())

    return callback
