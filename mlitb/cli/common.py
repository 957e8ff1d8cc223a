"""What every client command shares: where the master is, the admin token, `--json`, one-line errors."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from mlitb.api_client import LOCAL_MASTER, MasterClient

TOKEN_FILE = "admin-token"


class CliError(Exception):
    """A mistake the person can fix: printed as one line, exit status 1."""


def default_data_dir() -> str:
    return os.environ.get("MLITB_DATA_DIR") or os.path.join(os.getcwd(), "var")


def token_file(data_dir: str | os.PathLike[str]) -> Path:
    """Where `mlitb serve` writes its admin token (mode 0600), beside its state."""
    return Path(data_dir) / TOKEN_FILE


def add_client_options(parser: argparse.ArgumentParser, json_output: bool = True) -> None:
    """--master, --token (and --json) for a command that talks to a running master."""
    parser.add_argument("--master", metavar="URL", default=os.environ.get("MLITB_MASTER_URL") or LOCAL_MASTER,
                        help=f"the master's URL (default: MLITB_MASTER_URL, else {LOCAL_MASTER})")
    parser.add_argument("--token", metavar="TOKEN",
                        help="admin token (default: MLITB_ADMIN_TOKEN, else the token file mlitb serve wrote "
                             f"under MLITB_DATA_DIR or ./var: {TOKEN_FILE})")
    if json_output:
        parser.add_argument("--json", action="store_true", help="print JSON for scripts instead of text")


def admin_token(args: argparse.Namespace) -> str | None:
    """--token, else MLITB_ADMIN_TOKEN, else the local serve's token file, else None."""
    if getattr(args, "token", None):
        return args.token
    if os.environ.get("MLITB_ADMIN_TOKEN"):
        return os.environ["MLITB_ADMIN_TOKEN"]
    path = token_file(default_data_dir())
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def master(args: argparse.Namespace) -> MasterClient:
    return MasterClient(args.master, admin_token(args))


def emit(args: argparse.Namespace, value: Any, text: str) -> None:
    """`value` as JSON with --json, else the human `text`."""
    if getattr(args, "json", False):
        json.dump(value, sys.stdout, indent=2)
        sys.stdout.write("\n")
    elif text:
        print(text)
    sys.stdout.flush()
