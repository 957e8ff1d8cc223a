"""`mlitb worker`: check the master and the project first, then train until stopped.

The checks turn the common mistakes into one line each before any
reconnect loop starts: a URL without a scheme, a port where nothing
answers, the data server's port, an unknown project. Without `--project`
the worker joins the only running project or says which ones exist.
"""

from __future__ import annotations

import argparse
import os

from mlitb.api_client import LOCAL_MASTER, MasterClient
from mlitb.cli.common import CliError
from mlitb.cli.serve import add_log_level


def add(commands: argparse._SubParsersAction) -> None:
    worker = commands.add_parser("worker", help="join a project as a headless Python worker")
    worker.add_argument("--master", metavar="URL", default=os.environ.get("MLITB_MASTER_URL") or LOCAL_MASTER,
                        help=f"the master's URL, e.g. http://host:8000 (default: MLITB_MASTER_URL, else {LOCAL_MASTER})")
    worker.add_argument("--project", metavar="ID",
                        help="project id (default: the only running project; `mlitb project list` shows them)")
    worker.add_argument("--threads", type=int, default=1, help="trainer connections (one process each; default 1)")
    worker.add_argument("--cache-dir", metavar="DIR", help="where shards are kept (default ~/.cache/mlitb)")
    worker.add_argument("--name", help="how this machine is shown on the project's contributors table")
    role = worker.add_mutually_exclusive_group()
    role.add_argument("--predict-only", action="store_true",
                      help="serve only the project's prediction requests (no training, no data download)")
    role.add_argument("--no-predict", action="store_true", help="train only; take no prediction requests")
    worker.add_argument("--result-codecs", metavar="LIST", help="offer only these result codecs (f16,i8,topk)")
    worker.add_argument("--param-codecs", metavar="LIST", help="offer only these parameter codecs (f16,delta-f16,delta-i8)")
    add_log_level(worker)
    # Test knobs: make a real worker behave like a far-away client or a slow CPU.
    worker.add_argument("--extra-latency-ms", type=float, default=0.0, help=argparse.SUPPRESS)
    worker.add_argument("--slowdown", type=float, default=1.0, help=argparse.SUPPRESS)
    worker.set_defaults(run=run)


def choose_project(projects: list[dict], master_url: str) -> str:
    """The only running project's id; otherwise a CliError listing what exists."""
    running = [p for p in projects if p.get("status") == "running"]
    if len(running) == 1:
        return running[0]["id"]
    if not projects:
        raise CliError(f"the master at {master_url} has no project yet: create one with `mlitb project create`")
    listing = ", ".join(f"{p['id']} ({p.get('status')})" for p in projects)
    what = "no running project" if not running else f"{len(running)} running projects"
    raise CliError(f"the master at {master_url} has {what}; choose one with --project ID: {listing}")


def run(args: argparse.Namespace) -> int:
    from mlitb import logs

    logs.setup(args.log_level)
    if args.threads < 1:
        raise CliError("--threads must be at least 1")
    with MasterClient(args.master) as master:
        master.config()
        if args.project:
            master.project(args.project)
        else:
            args.project = choose_project(master.projects(), master.url)
            print(f"mlitb worker: joining project {args.project}", flush=True)
        args.master = master.url
    from mlitb.worker.run import run as run_worker

    return run_worker(args)
