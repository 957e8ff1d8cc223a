"""`mlitb serve`: the options of the whole system in one process."""

from __future__ import annotations

import argparse
import os

from mlitb.cli.common import default_data_dir
from mlitb.logs import LEVELS, default_level

EPILOG = """\
environment variables: MLITB_DATA_DIR, MLITB_REDIS_URL, MLITB_ADMIN_TOKEN, MLITB_PUBLIC_URL,
MLITB_DATA_URL, MLITB_FORWARDED_ALLOW_IPS, MLITB_LOG_LEVEL, and a MLITB_<LIMIT> for every limit
of the master and the data server (MLITB_MAX_FRAME_BYTES, MLITB_MAX_UPLOAD_BYTES, ...).
`mlitb config` prints them all with their current values; docs/deploy.md explains each."""


def add(commands: argparse._SubParsersAction) -> None:
    serve = commands.add_parser(
        "serve", help="start the master and the data server (the whole system)", epilog=EPILOG,
        description="Start the master with its data API under /data/ on the same port: one URL for everyone.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    serve.add_argument("--host", default="127.0.0.1",
                       help="interface to listen on (default 127.0.0.1; 0.0.0.0 for every interface)")
    serve.add_argument("--port", type=int, default=8000, help="port of the master and its /data/ API (default 8000)")
    serve.add_argument("--data-port", type=int, metavar="PORT",
                       help="serve the data API on this separate port instead of under /data/; "
                            "0: no data server here, workers use MLITB_DATA_URL")
    serve.add_argument("--public-url", metavar="URL", default=os.environ.get("MLITB_PUBLIC_URL") or None,
                       help="the URL people reach this master at, e.g. https://mlitb.example.org behind a proxy "
                            "(default: MLITB_PUBLIC_URL, else http://HOST:PORT)")
    serve.add_argument("--forwarded-allow-ips", metavar="IPS",
                       default=os.environ.get("MLITB_FORWARDED_ALLOW_IPS") or "127.0.0.1",
                       help="proxies whose X-Forwarded-* headers are trusted (default: MLITB_FORWARDED_ALLOW_IPS, "
                            "else 127.0.0.1; '*' trusts all)")
    serve.add_argument("--data-dir", default=default_data_dir(),
                       help="where state, the lock and the admin-token file live (default: MLITB_DATA_DIR, else ./var)")
    serve.add_argument("--redis", default=os.environ.get("MLITB_REDIS_URL") or None, metavar="URL",
                       help="keep state in Redis instead of files (default: MLITB_REDIS_URL)")
    serve.add_argument("--workers", type=int, default=0, metavar="N", help="also start N local Python workers")
    serve.add_argument("--checkpoint-every", type=int, metavar="N",
                       help="checkpoint each project every N iterations (default: a few seconds of training)")
    serve.add_argument("--progress-every", type=int, default=10, metavar="N",
                       help="log a progress line every N iterations of each running project (default 10)")
    add_log_level(serve)
    serve.set_defaults(run="mlitb.master.serve:run")


def add_log_level(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--log-level", choices=LEVELS, default=default_level(),
                        help="least important messages to log (default: MLITB_LOG_LEVEL, else info)")
