"""`mlitb config`: every MLITB_* environment variable, what it does and its current value.

`mlitb serve --help` points here, so the 30-odd limits need not crowd its
help text. The list is built from the same dataclasses `from_env` reads, so
it cannot fall behind the code.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os

from mlitb.cli.common import default_data_dir

# Variables read outside the Settings/Limits dataclasses: (name, meaning, default shown when unset).
GENERAL = (
    ("MLITB_DATA_DIR", "file store directory (state, lock, admin-token file)", "./var"),
    ("MLITB_REDIS_URL", "keep state in Redis instead of files", "none: the file store"),
    ("MLITB_ADMIN_TOKEN", "admin token of the master and data server", "generated on first start"),
    ("MLITB_PUBLIC_URL", "URL people reach the master at (proxy, TLS)", "http://HOST:PORT"),
    ("MLITB_DATA_URL", "data server URL given to workers (separate data server)", "/data/ on the master"),
    ("MLITB_FORWARDED_ALLOW_IPS", "proxies whose X-Forwarded-* headers are trusted", "127.0.0.1"),
    ("MLITB_MASTER_URL", "master URL for client commands (project, data, worker)", "http://127.0.0.1:8000"),
    ("MLITB_LOG_LEVEL", "debug, info, warning or error", "info"),
    ("MLITB_MASTER_ID", "this master's id in a tier of masters (/api/masters, the leases)", "random"),
    ("MLITB_MASTER_URLS", "every master's public URL in a tier (comma-separated; the pages' CSP)", "none"),
    ("MLITB_LEASE_TTL_S", "a project's lease time in a tier: failover takes about this plus one scan", "3"),
    ("MLITB_LEASE_SCAN_S", "heartbeat, renewal and claiming period in a tier", "0.5"),
    ("MLITB_REBALANCE_AFTER_S", "hysteresis before a project moves to a rejoined master", "15"),
)
SECRET = {"MLITB_ADMIN_TOKEN"}


def variables() -> list[dict[str, str]]:
    """Every variable with its meaning, default and current value (secrets masked)."""
    from mlitb.data.limits import Limits
    from mlitb.master.settings import Settings

    rows = []
    for name, meaning, default in GENERAL:
        value = os.environ.get(name)
        rows.append({"name": name, "meaning": meaning, "default": default,
                     "value": ("(set)" if value and name in SECRET else value)})
    for owner, cls in (("master", Settings), ("data server", Limits)):
        for field in dataclasses.fields(cls):
            if type(field.default) not in (int, float):
                continue
            name = "MLITB_" + field.name.upper()
            rows.append({"name": name, "meaning": f"{owner} limit {field.name}", "default": str(field.default),
                         "value": os.environ.get(name)})
    return rows


def run(args: argparse.Namespace) -> int:
    rows = variables()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    width = max(len(row["name"]) for row in rows)
    for row in rows:
        current = f"= {row['value']}" if row["value"] is not None else f"(default: {row['default']})"
        print(f"{row['name']:<{width}}  {row['meaning']}  {current}")
    print(f"\n(the data directory now: {default_data_dir()})")
    return 0


def add(commands: argparse._SubParsersAction) -> None:
    config = commands.add_parser("config", help="print every MLITB_* environment variable and its current value")
    config.add_argument("--json", action="store_true", help="print JSON for scripts")
    config.set_defaults(run=run)
