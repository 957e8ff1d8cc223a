"""One long-lived verifier process per master: spot-check recomputation never runs on the event loop.

A process beside the master (side_process.py). The queue is bounded:
when `settings.queue` checks are already waiting or running, a new one is
dropped (counted in `dropped`) rather than letting checks pile up behind a
slow verifier: sampling, not completeness, is what makes cheating a losing bet.
"""

from __future__ import annotations

from dataclasses import dataclass

from mlitb.master.side_process import SideProcess
from mlitb.master.verification import Claim, Verdict, VerifySettings, Work, verify


@dataclass
class VerifierStats:
    """For the API and Prometheus."""

    checked: int = 0
    passed: int = 0
    failed: int = 0
    dropped: int = 0


class Verifier:
    """The master's handle on the verifier process (started at the first check)."""

    def __init__(self, settings: VerifySettings = VerifySettings()) -> None:
        self.settings = settings
        self.stats = VerifierStats()
        self.process = SideProcess("verifier", settings.niceness)
        self._in_flight = 0

    @property
    def busy(self) -> bool:
        """True when a new check would be dropped."""
        return self._in_flight >= self.settings.queue

    async def verify(self, work: Work, claim: Claim, wait: bool = False) -> Verdict | None:
        """The verdict on one result, or None when the queue was full and the check was dropped
        (`wait`: queue it anyway, for a check someone asked for: a conformance run)."""
        if self.busy and not wait:
            self.stats.dropped += 1
            return None
        self._in_flight += 1
        try:
            verdict = await self.process.call(verify, work, claim, self.settings)
        finally:
            self._in_flight -= 1
        self.stats.checked += 1
        if verdict.passed:
            self.stats.passed += 1
        else:
            self.stats.failed += 1
        return verdict

    async def close(self) -> None:
        await self.process.close()
