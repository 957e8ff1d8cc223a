"""What a person running `mlitb worker` sees: one live line on a terminal, log lines otherwise.

A grid node's output usually goes to a log file, where a carriage-return line
would be garbage, so off a TTY the same facts are printed as plain lines at
most every `log_every_s` seconds. Several trainer connections (`--threads`)
report to one line, which shows their sum.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

from mlitb.logs import prefix


@dataclass(frozen=True)
class Progress:
    """One trainer's latest facts, sent after every result and on state changes."""

    slot: int
    state: str  # connecting, downloading, waiting, training, idle
    iteration: int = 0
    examples_per_s: float = 0.0
    loss: float = float("nan")
    budget_ms: int = 0
    shards: int = 0
    results: int = 0


def summarize(progress: dict[int, Progress]) -> str:
    """One line for all trainers: the newest iteration, summed speed, mean loss."""
    items = list(progress.values())
    training = [p for p in items if p.state == "training"]
    states = sorted({p.state for p in items if p.state != "training"})
    parts = [f"{len(items)} trainer{'s' if len(items) != 1 else ''}"]
    if training:
        losses = [p.loss for p in training if p.loss == p.loss]
        parts += [
            f"iteration {max(p.iteration for p in training)}",
            f"{sum(p.examples_per_s for p in training):,.0f} examples/s",
            f"loss {sum(losses) / len(losses):.4f}" if losses else "loss -",
            f"budget {max(p.budget_ms for p in training)} ms",
            f"{sum(p.shards for p in training)} shards",
            f"{sum(p.results for p in items)} results",
        ]
    if states:
        parts.append(", ".join(states))
    return " · ".join(parts)


class StatusLine:
    """Renders progress: rewritten in place on a TTY, throttled log lines elsewhere."""

    def __init__(
        self,
        stream: TextIO = sys.stderr,
        *,
        tty: bool | None = None,
        log_every_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream
        self.tty = stream.isatty() if tty is None else tty
        self.log_every_s = log_every_s
        self.clock = clock
        self._progress: dict[int, Progress] = {}
        self._last_log = float("-inf")
        self._last_states: set[str] = set()
        self._width = 0

    def update(self, progress: Progress) -> None:
        self._progress[progress.slot] = progress
        line = summarize(self._progress)
        if self.tty:
            self.stream.write("\r" + line.ljust(self._width))
            self._width = len(line)
            self.stream.flush()
            return
        states = {p.state for p in self._progress.values()}
        now = self.clock()
        if states != self._last_states or now - self._last_log >= self.log_every_s:
            self.stream.write(prefix("mlitb.worker") + line + "\n")
            self.stream.flush()
            self._last_log, self._last_states = now, states

    def message(self, text: str) -> None:
        """A line that stays (connection events, errors), above the live line."""
        if self.tty and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self._width = 0
        self.stream.write(prefix("mlitb.worker") + text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty and self._width:
            self.stream.write("\n")
            self.stream.flush()
