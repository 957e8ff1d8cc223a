"""`mlitb data serve|list|add|append|delete`: the data server and its datasets.

The client commands find the data server through the master (`/api/config`,
whose data URL may be a path on the master's own origin) unless `--server`
or `MLITB_DATA_URL` names one.
"""

from __future__ import annotations

import argparse
import os
import sys

from mlitb.cli.common import (
    CliError,
    add_client_options,
    admin_token,
    default_data_dir,
    emit,
    master,
)
from mlitb.cli.serve import add_log_level


def add(commands: argparse._SubParsersAction) -> None:
    data = commands.add_parser("data", help="the data server and its datasets")
    actions = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")

    serve = actions.add_parser("serve", help="run the data server alone (e.g. several behind a load balancer)")
    serve.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8001, help="port (default 8001)")
    serve.add_argument("--data-dir", default=default_data_dir(), help="file store directory (default: MLITB_DATA_DIR, else ./var)")
    serve.add_argument("--redis", default=os.environ.get("MLITB_REDIS_URL") or None, metavar="URL",
                       help="keep datasets in Redis (default: MLITB_REDIS_URL)")
    add_log_level(serve)
    serve.set_defaults(run="mlitb.data.server:run")

    listing = actions.add_parser("list", help="the datasets the master's data server holds")
    _client_options(listing)
    listing.set_defaults(run=run_list)

    upload = actions.add_parser("add", help="upload a zipped image dataset")
    upload.add_argument("zip", help="zip whose sub-directory names are the class labels")
    upload.add_argument("--name", help="dataset name (default: the zip's name)")
    upload.add_argument("--size", metavar="WxH", help="resize every image (default: the first image's size)")
    upload.add_argument("--channels", type=int, choices=(1, 3), help="1 (grey) or 3 (RGB) (default: the first image's)")
    split = upload.add_mutually_exclusive_group()
    split.add_argument("--test-zip", metavar="ZIP", help="a separate zip for the test split")
    split.add_argument("--holdout", type=float, metavar="FRACTION", help="hold out this fraction for testing")
    _client_options(upload)
    upload.set_defaults(run=run_add)

    append = actions.add_parser("append", help="add labelled examples to a dataset's train split")
    append.add_argument("dataset", metavar="DATASET_ID", help="the dataset to grow (`mlitb data list`)")
    append.add_argument("zip", nargs="?", help="zip whose sub-directory names are among the dataset's classes")
    append.add_argument("--image", metavar="FILE", help="one image instead of a zip (with --label)")
    append.add_argument("--label", metavar="CLASS", help="the image's class")
    _client_options(append)
    append.set_defaults(run=run_append)

    delete = actions.add_parser("delete", help="delete a dataset (its projects pause)")
    delete.add_argument("dataset", metavar="DATASET_ID", help="the dataset to delete")
    _client_options(delete)
    delete.set_defaults(run=run_delete)


def _client_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--server", metavar="URL",
                        help="the data server's URL (default: MLITB_DATA_URL, else the one the master gives workers)")
    add_client_options(parser)


def data_client(args: argparse.Namespace, needs_token: bool):
    """The data server of --server or MLITB_DATA_URL, else the master's; the token is checked for presence first."""
    from mlitb.data.client import DataClient

    token = admin_token(args)
    if needs_token and not token:
        raise CliError("this needs the admin token: pass --token, set MLITB_ADMIN_TOKEN, or run it where "
                       "`mlitb serve` keeps its state (it writes DATA_DIR/admin-token)")
    server = args.server or os.environ.get("MLITB_DATA_URL")
    if server:
        return DataClient(server, token)
    with master(args) as client:
        return DataClient(client.data_url(), token)


def run_list(args: argparse.Namespace) -> int:
    client = data_client(args, needs_token=False)
    datasets = client.list()
    from mlitb.data.client import describe

    emit(args, datasets, "\n".join(f"{d['id']}  {describe(d)}" for d in datasets) or f"no datasets at {client.url}")
    return 0


def run_add(args: argparse.Namespace) -> int:
    client = data_client(args, needs_token=True)
    paths = {"train": args.zip} | ({"test": args.test_zip} if args.test_zip else {})
    params = {key: str(value) for key, value in (("name", args.name), ("size", args.size), ("channels", args.channels),
                                                 ("holdout", args.holdout)) if value is not None}
    manifest = client.add(paths, params)
    from mlitb.data.client import describe

    print(describe(manifest), file=sys.stderr)
    emit(args, manifest, manifest["id"])
    return 0


def run_append(args: argparse.Namespace) -> int:
    if (args.zip is None) == (args.image is None):
        print("mlitb data append: give a ZIP or --image FILE --label CLASS (one of them)", file=sys.stderr)
        return 2
    if args.image is not None and not args.label:
        print("mlitb data append: --image needs --label CLASS", file=sys.stderr)
        return 2
    if args.zip is not None and args.label is not None:
        print("mlitb data append: --label goes with --image; a zip's class folders name its labels", file=sys.stderr)
        return 2
    client = data_client(args, needs_token=True)
    paths, params = ({"zip": args.zip}, {}) if args.zip is not None else ({"image": args.image}, {"label": args.label})
    manifest = client.append(args.dataset, paths, params)
    emit(args, manifest, f"dataset {manifest['id']}: {manifest['splits']['train']['count']} train examples, "
                         f"revision {manifest['revision']}")
    return 0


def run_delete(args: argparse.Namespace) -> int:
    client = data_client(args, needs_token=True)
    client.delete(args.dataset)
    emit(args, {"deleted": args.dataset}, f"deleted dataset {args.dataset} from {client.url}")
    return 0
