"""`mlitb predict` and `mlitb export`: research closures in, predictions or ConvNetJS JSON out.

Before the closure is parsed its file is sniffed, so arguments given in the
wrong order (an image where the closure goes) get a one-line hint instead
of a decoding error.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from mlitb.cli.common import CliError

IMAGE_MAGIC = {b"\x89PNG": "a PNG image", b"\xff\xd8\xff": "a JPEG image", b"GIF8": "a GIF image",
               b"BM": "a BMP image", b"PK\x03\x04": "a zip file"}


def sniff(path: str) -> str | None:
    """What the file looks like when it is not JSON text ('a PNG image', ...), else None."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(16)
    except OSError:
        return None  # read_closure reports a missing or unreadable file itself
    for magic, what in IMAGE_MAGIC.items():
        if head.startswith(magic):
            return what
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "a WebP image"
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    return None if text[:1] in (b"{", b"") else "not JSON"


def check_closure_argument(path: str, usage: str) -> None:
    what = sniff(path)
    if what is not None:
        raise CliError(f"{path} is {what}, not a closure JSON file: the closure comes first ({usage})")


def add(commands: argparse._SubParsersAction) -> None:
    predict = commands.add_parser("predict", help="classify images with a research closure, or through a master")
    predict.add_argument("closure", help="closure JSON file (download it with `mlitb project closure ID -o FILE`); "
                                         "with --master: the first image or directory")
    predict.add_argument("images", nargs="*", metavar="IMAGE", help="image files (PNG, JPEG, ...) or directories")
    predict.add_argument("--top", type=int, default=3, help="how many classes to print per image (default 3)")
    predict.add_argument("--master", metavar="URL", help="ask this master's workers instead of a local closure")
    predict.add_argument("--project", metavar="ID", help="the project to ask (with --master)")
    predict.add_argument("--batch", type=int, default=1000, help="images per request (with --master; default 1000)")
    predict.add_argument("--json", action="store_true", help="print one JSON document (with --master)")
    predict.add_argument("--token", help="admin token, for a project that requires it (default $MLITB_ADMIN_TOKEN)")
    predict.set_defaults(run=run_predict)

    export = commands.add_parser("export", help="convert a research closure to another format")
    export.add_argument("closure", help="closure JSON file")
    export.add_argument("--format", choices=("convnetjs",), default="convnetjs",
                        help="output format (default convnetjs: Net.fromJSON loads it)")
    export.add_argument("-o", "--output", help="output file (default: standard output)")
    export.set_defaults(run=run_export)

    verify = commands.add_parser("verify", help="check that a closure's test figures reproduce from its data")
    verify.add_argument("closure", help="closure JSON file")
    verify.add_argument("--data-url", default=os.environ.get("MLITB_DATA_URL", "http://127.0.0.1:8001"),
                        metavar="URL", help="data server holding the closure's dataset (default: $MLITB_DATA_URL "
                                            "or http://127.0.0.1:8001)")
    verify.set_defaults(run=run_verify)


def run_predict(args: argparse.Namespace) -> int:
    if not args.master:
        check_closure_argument(args.closure, "mlitb predict CLOSURE IMAGE...")
    from mlitb.predict import run

    return run(args)


def run_export(args: argparse.Namespace) -> int:
    check_closure_argument(args.closure, "mlitb export CLOSURE")
    if args.output and Path(args.output).is_dir():
        raise CliError(f"-o {args.output} is a directory: give a file name")
    from mlitb.export import run

    return run(args)


def run_verify(args: argparse.Namespace) -> int:
    """`mlitb verify CLOSURE [--data-url URL]`: exit 0 when it reproduces, 1 when something differs, 2 when the
    closure cannot be read."""
    from mlitb.closure import ClosureError, load_closure
    from mlitb.master.closure_verify import verify_with_server

    try:
        closure = load_closure(Path(args.closure).read_bytes())
    except (OSError, ClosureError) as exc:
        print(f"mlitb verify: cannot read {args.closure}: {exc}", file=sys.stderr)
        return 2
    report = verify_with_server(closure, args.data_url)
    print(report.text())
    return 0 if report.ok else 1
