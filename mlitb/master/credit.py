"""Volunteer credit (BOINC's idea): what each volunteer gave a project, counted by the master.

A volunteer is the id a browser keeps in its localStorage (or `mlitb worker
--name`'s), sent in `hello.client.volunteer`; it survives reloads and
reconnects, and the totals survive master restarts (they travel in the
checkpoint). Only applied results count, with their count capped at the
work's examples; a client whose result fails a spot check loses what its
connection earned. An id is self-declared: crediting someone else's id gives
them credit for real, checked work, which is harmless.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

ANONYMOUS = ""
REMEMBERED_CONNECTIONS = 10_000  # a refuted result can still be taken back after its client left


@dataclass
class Contribution:
    """One volunteer's totals in one project."""

    name: str = ""
    examples: int = 0
    results: int = 0

    def add(self, examples: int, results: int = 1) -> None:
        self.examples += examples
        self.results += results


@dataclass
class Ledger:
    """Every volunteer's contribution to one project, and what each open connection earned so far."""

    by_volunteer: dict[str, Contribution]
    by_connection: dict[str, tuple[str, Contribution]]

    @classmethod
    def load(cls, raw: dict[str, Any] | None) -> Ledger:
        entries = {vid: Contribution(**fields) for vid, fields in (raw or {}).items()}
        return cls(entries, {})

    def dump(self) -> dict[str, dict[str, Any]]:
        return {vid: asdict(c) for vid, c in self.by_volunteer.items()}

    def credit(self, connection: str, volunteer: str, name: str, examples: int) -> None:
        """An applied result of `examples` examples from `connection`, run by `volunteer`."""
        if volunteer == ANONYMOUS:
            return
        entry = self.by_volunteer.setdefault(volunteer, Contribution())
        entry.name = name or entry.name
        entry.add(examples)
        _, earned = self.by_connection.setdefault(connection, (volunteer, Contribution()))
        earned.add(examples)
        while len(self.by_connection) > REMEMBERED_CONNECTIONS:
            del self.by_connection[next(iter(self.by_connection))]

    def revoke(self, connection: str) -> None:
        """The connection's results were refuted (a failed spot check): take back all it earned."""
        volunteer, earned = self.by_connection.pop(connection, (ANONYMOUS, Contribution()))
        entry = self.by_volunteer.get(volunteer)
        if entry is not None:
            entry.add(-earned.examples, -earned.results)

    def top(self, n: int) -> list[dict[str, Any]]:
        ranked = sorted(self.by_volunteer.items(), key=lambda item: (-item[1].examples, item[0]))
        return [{"volunteer": vid, **asdict(c)} for vid, c in ranked[:n]]

    def of(self, volunteer: str) -> dict[str, Any]:
        entry = self.by_volunteer.get(volunteer, Contribution())
        return {"volunteer": volunteer, **asdict(entry)}
