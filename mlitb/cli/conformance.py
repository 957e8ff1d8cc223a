"""`mlitb conformance`: check that a worker computes what the master's engine computes (for worker authors)."""

from __future__ import annotations

import argparse

from mlitb.cli.common import add_client_options, admin_token


def add(commands: argparse._SubParsersAction) -> None:
    conformance = commands.add_parser(
        "conformance", help="check that a worker computes what the master's engine computes (for worker authors)")
    conformance.add_argument("--project", required=True, metavar="ID", help="the project the worker trains")
    conformance.add_argument("--worker", metavar="CLIENT_ID", help="the worker's client id (default: any trainer)")
    conformance.add_argument("--results", type=int, default=3, help="how many results to recompute (default 3)")
    conformance.add_argument("--timeout", type=float, default=120.0, metavar="S", help="give up after S seconds")
    add_client_options(conformance, json_output=False)
    conformance.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from mlitb.conformance import run as check

    args.token = admin_token(args)
    return check(args)
