"""The `mlitb` command: one sub-command per thing a person does.

Each command is a thin function that parses nothing itself and calls into the
part that does the work, so the parts stay usable from Python.
"""

from __future__ import annotations

import argparse
import os
import sys

from mlitb import __version__

DEFAULT_DATA_DIR = os.environ.get("MLITB_DATA_DIR", os.path.join(os.getcwd(), "var"))
DEFAULT_REDIS_URL = os.environ.get("MLITB_REDIS_URL") or None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mlitb", description="Machine learning in the browser, served from Python.")
    parser.add_argument("--version", action="version", version=f"mlitb {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="start the master and the data server (the whole system)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000, help="master port (default 8000)")
    serve.add_argument("--data-port", type=int, default=8001,
                       help="embedded data server port (default 8001; 0: none, set MLITB_DATA_URL to a separate one)")
    serve.add_argument("--data-dir", default=DEFAULT_DATA_DIR, help="where state lives with the file store")
    serve.add_argument("--redis", default=DEFAULT_REDIS_URL, metavar="URL", help="use Redis as the store")
    serve.add_argument("--workers", type=int, default=0, metavar="N", help="also start N local Python workers")
    serve.add_argument("--checkpoint-every", type=int, metavar="N",
                       help="checkpoint each project every N iterations (default: a few seconds of training)")
    serve.set_defaults(run="mlitb.master.serve:run")

    worker = commands.add_parser("worker", help="join a project as a headless Python worker")
    worker.add_argument("--master", required=True, metavar="URL", help="the master's URL, e.g. http://host:8000")
    worker.add_argument("--project", metavar="ID", help="project id (default: the master's default project)")
    worker.add_argument("--threads", type=int, default=1, help="trainer connections (one process each)")
    worker.add_argument("--cache-dir", metavar="DIR", help="where shards are kept (default ~/.cache/mlitb)")
    # Test knobs: make a real worker behave like a far-away client or a slow CPU.
    worker.add_argument("--extra-latency-ms", type=float, default=0.0, help=argparse.SUPPRESS)
    worker.add_argument("--slowdown", type=float, default=1.0, help=argparse.SUPPRESS)
    worker.add_argument("--result-codecs", metavar="LIST", help="offer only these result codecs (f16,i8,topk)")
    worker.add_argument("--param-codecs", metavar="LIST", help="offer only these parameter codecs (f16,delta-f16,delta-i8)")
    worker.set_defaults(run="mlitb.worker.run:run")

    data = commands.add_parser("data", help="the data server and its datasets")
    data_commands = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    data_serve = data_commands.add_parser("serve", help="run the data server alone")
    data_serve.add_argument("--host", default="127.0.0.1")
    data_serve.add_argument("--port", type=int, default=8001)
    data_serve.add_argument("--data-dir", default=DEFAULT_DATA_DIR)
    data_serve.add_argument("--redis", default=DEFAULT_REDIS_URL, metavar="URL")
    data_serve.set_defaults(run="mlitb.data.server:run")
    data_add = data_commands.add_parser("add", help="upload a zipped image dataset")
    data_add.add_argument("zip", help="zip whose sub-directory names are the class labels")
    data_add.add_argument("--server", default="http://127.0.0.1:8001", metavar="URL")
    data_add.add_argument("--name")
    data_add.add_argument("--size", metavar="WxH", help="resize every image (default: the first image's size)")
    data_add.add_argument("--channels", type=int, choices=(1, 3))
    split = data_add.add_mutually_exclusive_group()
    split.add_argument("--test-zip", metavar="ZIP", help="a separate zip for the test split")
    split.add_argument("--holdout", type=float, metavar="FRACTION", help="hold out this fraction for testing")
    data_add.set_defaults(run="mlitb.data.upload:run")
    data_append = data_commands.add_parser("append", help="add labelled examples to a dataset's train split")
    data_append.add_argument("dataset", metavar="DATASET_ID")
    data_append.add_argument("zip", nargs="?", help="zip whose sub-directory names are among the dataset's classes")
    data_append.add_argument("--image", metavar="FILE", help="one image instead of a zip (with --label)")
    data_append.add_argument("--label", metavar="CLASS", help="the image's class")
    data_append.add_argument("--server", default="http://127.0.0.1:8001", metavar="URL")
    data_append.set_defaults(run="mlitb.data.upload:run_append")

    predict = commands.add_parser("predict", help="classify images with a research closure")
    predict.add_argument("closure", help="closure JSON file")
    predict.add_argument("images", nargs="+", metavar="IMAGE")
    predict.add_argument("--top", type=int, default=3)
    predict.set_defaults(run="mlitb.predict:run")

    export = commands.add_parser("export", help="convert a research closure to another format")
    export.add_argument("closure", help="closure JSON file")
    export.add_argument("--format", choices=("convnetjs",), default="convnetjs")
    export.add_argument("-o", "--output", help="output file (default: standard output)")
    export.set_defaults(run="mlitb.export:run")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    module_name, func_name = args.run.split(":")
    module = __import__(module_name, fromlist=[func_name])
    return int(getattr(module, func_name)(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
