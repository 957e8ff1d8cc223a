"""`mlitb project create --from CLOSURE --dataset D [--new-head]`: transfer learning from the command line.

A thin client of `POST /api/projects` with `from` (docs/api.md): `--from` is a
closure file or the id of a project on the master. Kept in its own module so
the CLI package can register it wherever its `project create` lives.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any


def transfer_body(source: str, dataset: str, *, new_head: bool, name: str | None = None,
                  lr_multipliers: list[float] | None = None, start: bool = False) -> dict[str, Any]:
    """The request body: the closure file's JSON when `source` is a file, else `source` as a project id."""
    path = Path(source)
    origin: Any = json.loads(path.read_text()) if path.is_file() else source
    body: dict[str, Any] = {"name": name or f"transfer to {dataset}", "dataset": dataset, "from": origin,
                            "status": "running" if start else "paused"}
    if new_head:
        body["head"] = "replace"
    if lr_multipliers is not None:
        body["lr_multipliers"] = lr_multipliers
    return body


def run(args: argparse.Namespace) -> int:
    import httpx  # here, not at the top: `mlitb --help` and the other commands need not load it

    token = os.environ.get("MLITB_ADMIN_TOKEN")
    if not token:
        print("mlitb project create: set MLITB_ADMIN_TOKEN to the master's admin token", file=sys.stderr)
        return 2
    try:
        rates = json.loads(args.lr_multipliers) if args.lr_multipliers else None
        body = transfer_body(args.source, args.dataset, new_head=args.new_head, name=args.name,
                             lr_multipliers=rates, start=args.start)
    except (OSError, ValueError) as exc:
        print(f"mlitb project create: cannot read {args.source}: {exc}", file=sys.stderr)
        return 2
    try:
        response = httpx.post(f"{args.master.rstrip('/')}/api/projects", json=body, timeout=120,
                              headers={"Authorization": f"Bearer {token}"})
    except httpx.HTTPError as exc:
        print(f"mlitb project create: cannot reach the master at {args.master}: {exc}", file=sys.stderr)
        return 1
    answer = response.json() if response.headers.get("content-type", "").startswith("application/json") else {}
    if response.status_code != 201:
        print(f"mlitb project create: {response.status_code}: {answer.get('error', response.text)}", file=sys.stderr)
        return 1
    print(answer["id"])
    return 0


def add_create_arguments(create: argparse.ArgumentParser) -> None:
    """The transfer options of `mlitb project create`."""
    create.add_argument("--from", dest="source", required=True, metavar="CLOSURE",
                        help="a closure file, or the id of a project on the master, to start from")
    create.add_argument("--dataset", required=True, metavar="ID", help="the new project's dataset")
    create.add_argument("--new-head", action="store_true",
                        help="re-initialise the last layer for the dataset's classes (else keep every layer)")
    create.add_argument("--name")
    create.add_argument("--lr-multipliers", metavar="JSON", help="one learning-rate multiplier per layer, e.g. [1,0,1]")
    create.add_argument("--start", action="store_true", help="start training at once")
    create.add_argument("--master", default=os.environ.get("MLITB_MASTER_URL", "http://127.0.0.1:8000"), metavar="URL")
    create.set_defaults(run="mlitb.transfer_cli:run")
