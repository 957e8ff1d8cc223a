"""One log format for every mlitb process: timestamp, level, source, message.

`setup(level)` is called once by each command (`serve`, `data serve`,
`worker`); the master's own modules just use `logging.getLogger(__name__)`.
`progress_line` turns one iteration's metric record into the line `serve`
logs every N iterations, so the format lives here and is tested on its own.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from collections.abc import Mapping
from typing import Any, TextIO

FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"
LEVELS = ("debug", "info", "warning", "error")


def default_level() -> str:
    """MLITB_LOG_LEVEL when it names a level, else info."""
    level = (os.environ.get("MLITB_LOG_LEVEL") or "info").lower()
    return level if level in LEVELS else "info"


def setup(level: str = "info", stream: TextIO | None = None) -> None:
    """Route every logger (mlitb's, uvicorn's) through one handler in the one format."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT, DATE_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    # httpx logs every request it makes at INFO: noise in a client command's output.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, root.level))
    # One line per HTTP request would bury the training log; errors still come through uvicorn.error.
    logging.getLogger("uvicorn.access").setLevel(max(logging.WARNING, root.level))


def prefix(source: str, level: str = "INFO") -> str:
    """The start of a line in FORMAT, for output written without the logging module (the worker's status)."""
    return f"{time.strftime(DATE_FORMAT)} {level:<7} {source}: "


def _number(value: Any, pattern: str) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return pattern.format(value)
    return "-"


def progress_line(project: str, record: Mapping[str, Any], trainers: int,
                  examples_per_s: float | None = None) -> str:
    """The periodic progress line of one project from its latest metric record.

    `record` is a metric record as the master keeps it (iteration, train_loss,
    and test_accuracy on evaluated iterations); `examples_per_s` falls back to
    the record's own figure.
    """
    rate = examples_per_s if examples_per_s is not None else record.get("examples_per_s")
    accuracy = record.get("test_accuracy")
    return (f"project {project}: iteration {record.get('iteration', '-')}, "
            f"train loss {_number(record.get('train_loss', record.get('loss')), '{:.4f}')}, "
            f"test accuracy {_number(accuracy * 100 if isinstance(accuracy, (int, float)) else None, '{:.1f}%')}, "
            f"{trainers} trainer{'s' if trainers != 1 else ''}, {_number(rate, '{:,.0f}')} examples/s")
