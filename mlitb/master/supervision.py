"""Keep a project's loop alive through a failing iteration, and say why when it cannot.

A step that raises would otherwise end the loop task silently, leaving a
project that shows "running" and never iterates. The supervisor logs the
traceback, records the error on the project (the API's `error` field, so the
researcher sees it), and restarts the loop with exponential backoff; after
`tries` failures in a row with no iteration completed in between it pauses
the project, error still shown, until the researcher starts it again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from mlitb.backoff import exponential_s
from mlitb.master.runtime import ProjectError, ProjectRuntime

log = logging.getLogger("mlitb.master.supervision")


@dataclass(frozen=True)
class RestartPolicy:
    """How often to restart a failing loop before pausing its project, and how long to wait between tries."""

    tries: int = 3
    backoff_s: float = 0.5

    def delay(self, failures: int) -> float:
        return exponential_s(failures, self.backoff_s)


async def supervise(rt: ProjectRuntime, run: Callable[[], Awaitable[None]], policy: RestartPolicy,
                    give_up: Callable[[ProjectRuntime], Awaitable[None]]) -> None:
    """Run `run()` (the loop) until cancelled; on an exception record it, restart, or `give_up` after `tries`."""
    failures, failed_at = 0, None
    while True:
        try:
            await run()
            return
        except Exception as exc:  # a pause, delete or shutdown (CancelledError) is not a failure and passes through
            failures = failures + 1 if rt.iteration == failed_at else 1
            failed_at = rt.iteration
            log.error("project %s: iteration %d failed (%d of %d tries)", rt.id, rt.iteration, failures, policy.tries,
                      exc_info=exc)
            rt.discard_open_iteration()
            last = failures >= policy.tries
            then = (f"the project was paused after {failures} failures in a row; fix the cause and start it again"
                    if last else f"restarting the loop in {policy.delay(failures):g} s")
            rt.record_error(ProjectError(f"iteration {rt.iteration} failed: {_describe(exc)}; {then}", time.time(),
                                         rt.iteration, failures))
            if last:
                await give_up(rt)
                return
            await asyncio.sleep(policy.delay(failures))


def _describe(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
