"""What `mlitb project create --from CLOSURE|PROJECT --dataset D --new-head` sends: transfer learning.

A body for `POST /api/projects` with `from` (docs/api.md): `source` is a
closure file, or else the id of a project on the master. Kept apart from the
CLI package so the CLI only registers the flags.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def transfer_body(source: str, dataset: str, *, new_head: bool, name: str | None = None,
                  lr_multipliers: list[float] | None = None) -> dict[str, Any]:
    """The request body: the closure file's JSON when `source` is a file, else `source` as a project id."""
    path = Path(source)
    origin: Any = json.loads(path.read_text()) if path.is_file() else source
    body: dict[str, Any] = {"name": name or f"transfer to {dataset}", "dataset": dataset, "from": origin}
    if new_head:
        body["head"] = "replace"
    if lr_multipliers is not None:
        body["lr_multipliers"] = lr_multipliers
    return body
