"""The masters a worker knows, and which to try next (several masters on one Redis, docs/deploy.md).

A worker starts with one URL (`mlitb worker --master URL`); it learns the
others from `GET /api/masters` after each welcome and from `moved` frames.
`moved {url}` says where its project is now; a lost connection means the
master may be gone, so the next attempt goes to the next master in the list.
Pure logic: no I/O here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


def http_base(url: str) -> str:
    """`ws://h:1/ws` and `http://h:1/` both → `http://h:1` (how masters are compared and listed)."""
    url = url.rstrip("/")
    url = url.removesuffix("/ws")
    for ws, http in (("ws://", "http://"), ("wss://", "https://")):
        if url.startswith(ws):
            url = http + url[len(ws):]
    return url


@dataclass
class MasterList:
    """The current master and the known ones, in the order they are tried."""

    current: str
    known: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.current = http_base(self.current)
        self.known = [self.current] + [u for u in map(http_base, self.known) if u != self.current]

    def learn(self, urls: list[Any]) -> None:
        """Add masters (from `/api/masters` or a `moved` frame); the list only grows, so none is forgotten."""
        for url in urls:
            if isinstance(url, str) and url.startswith(("http://", "https://")) and http_base(url) not in self.known:
                self.known.append(http_base(url))

    def moved(self, url: str | None, masters: list[Any]) -> None:
        """Follow a `moved` frame: to its URL, or (no owner yet) to the next master."""
        self.learn(masters)
        if isinstance(url, str) and url.startswith(("http://", "https://")):
            self.learn([url])
            self.current = http_base(url)
        else:
            self.failed()

    def failed(self) -> None:
        """The current master could not be reached or went away: try the next one."""
        if len(self.known) > 1:
            self.current = self.known[(self.known.index(self.current) + 1) % len(self.known)]
