"""The `mlitb` command: one sub-command group per thing a person does, one module per group.

Each command is a thin function that calls into the part that does the work,
so the parts stay usable from Python. A mistake the person can fix is printed
as one line naming what was wrong and what to do, with exit status 1 (2 only
for usage errors, which argparse reports).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable

from mlitb import __version__
from mlitb.api_client import ApiError
from mlitb.cli import config_cmd, conformance, data, model, project, serve, worker
from mlitb.cli.common import CliError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mlitb", description="Machine learning in the browser, served from Python.")
    parser.add_argument("--version", action="version", version=f"mlitb {__version__}", help="print the version and exit")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in (serve, worker, project, data, model, conformance, config_cmd):
        group.add(commands)
    return parser


def _target(run: str | Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """A command's function; "module:function" strings import heavy parts only when that command runs."""
    if callable(run):
        return run
    module_name, func_name = run.split(":")
    return getattr(importlib.import_module(module_name), func_name)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    name = " ".join(["mlitb", args.command] + [getattr(args, k) for k in ("project_command", "data_command")
                                                if getattr(args, k, None)])
    try:
        return int(_target(args.run)(args) or 0)
    except (CliError, ApiError) as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`mlitb project list | head`): no traceback, and none at exit either.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
