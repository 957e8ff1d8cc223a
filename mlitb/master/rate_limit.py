"""A token bucket per client address: the open prediction endpoint's defence against one greedy client.

Each address may make `burst` requests at once and `per_minute` on average.
Pure: the caller passes the time (seconds, any monotonic clock). Memory is
bounded: beyond `max_clients` addresses the least recently seen is forgotten
(it gets a full bucket back, which only errs toward letting a request in).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field


@dataclass
class RateLimiter:
    per_minute: float
    burst: int
    max_clients: int = 10_000
    _buckets: OrderedDict[str, tuple[float, float]] = field(default_factory=OrderedDict)  # address -> (tokens, time)

    def take(self, address: str, now: float) -> float:
        """Spend one request of `address`: 0.0 if allowed, else the seconds until the next is."""
        tokens, then = self._buckets.pop(address, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - then) * self.per_minute / 60.0)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        self._buckets[address] = (tokens, now)
        while len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)
        return 0.0 if allowed else (1.0 - tokens) * 60.0 / max(self.per_minute, 1e-9)
