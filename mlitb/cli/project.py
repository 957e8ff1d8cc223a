"""`mlitb project create|list|show|start|pause|set|delete|closure|metrics`: the project lifecycle.

Everything goes through the master's HTTP API (mlitb.api_client), so what
the CLI can do the web UI can do and the other way round. A template is
fitted to the dataset: its input layer takes the dataset's image shape and
its softmax the dataset's class count.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path
from typing import Any

from mlitb.api_client import ApiError
from mlitb.cli.common import CliError, add_client_options, emit, master

PATCHABLE = ("name", "description", "iteration_ms", "aggregation")


def templates() -> dict[str, list[dict[str, Any]]]:
    from mlitb.model import zoo

    return {"convnet": zoo.MNIST_CONVNET, "mlp": zoo.MNIST_MLP, "softmax": zoo.MNIST_SOFTMAX}


def fit(layers: list[dict[str, Any]], shape: list[int], classes: int) -> list[dict[str, Any]]:
    """A copy of `layers` whose input is the dataset's (height, width, channels) and softmax its class count."""
    fitted = copy.deepcopy(layers)
    height, width, channels = shape
    fitted[0].update(out_sx=width, out_sy=height, out_depth=channels)
    for layer in fitted:
        if layer.get("type") == "softmax":
            layer["num_classes"] = classes
    return fitted


def parse_assignments(pairs: list[str]) -> dict[str, Any]:
    """KEY=VALUE pairs; numbers become numbers."""
    values: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise CliError(f"{pair!r} is not KEY=VALUE (e.g. learning_rate=0.01)")
        try:
            values[key] = int(text) if text.lstrip("-").isdigit() else float(text)
        except ValueError:
            values[key] = text
    return values


def patch_body(values: dict[str, Any]) -> dict[str, Any]:
    """name, description, iteration_ms and aggregation as they are; every other key is an optimizer hyper-parameter."""
    body: dict[str, Any] = {key: values[key] for key in PATCHABLE if key in values}
    hyper = {key: value for key, value in values.items() if key not in PATCHABLE}
    if hyper:
        body["optimizer"] = hyper
    return body


def add(commands: argparse._SubParsersAction) -> None:
    project = commands.add_parser("project", help="create, start, pause, change, inspect and delete projects")
    actions = project.add_subparsers(dest="project_command", required=True, metavar="ACTION")

    create = actions.add_parser("create", help="create a project from a template, a layers file or a closure")
    source = create.add_mutually_exclusive_group()
    source.add_argument("template", nargs="?", choices=tuple(templates()),
                        help="a built-in net, fitted to the dataset's image shape and classes (default convnet)")
    source.add_argument("--layers", metavar="FILE", help="JSON file with ConvNetJS-style layer definitions")
    source.add_argument("--from", dest="closure", metavar="CLOSURE",
                        help="resume from a research closure file (its layers, parameters and dataset); with "
                             "--dataset or --new-head: transfer its trained layers (a file or a project id)")
    create.add_argument("--new-head", action="store_true",
                        help="with --from: re-initialise the last layer for --dataset's classes (transfer learning)")
    create.add_argument("--lr-multipliers", metavar="JSON",
                        help="one learning-rate multiplier per layer, e.g. [1,0,1] (0 freezes a layer)")
    create.add_argument("--name", help="project name (default: the template and dataset)")
    create.add_argument("--description", help="what volunteers are told the project is for")
    create.add_argument("--dataset", metavar="ID", help="dataset id (default: the only dataset, or mnist)")
    create.add_argument("--optimizer", choices=("adagrad", "sgd", "adam"), help="optimizer (default adagrad)")
    create.add_argument("--set", dest="hyper", action="append", default=[], metavar="KEY=VALUE",
                        help="optimizer hyper-parameter, e.g. --set learning_rate=0.01 (repeatable)")
    create.add_argument("--iteration-ms", type=int, metavar="T", help="iteration duration T in ms (default 1000)")
    create.add_argument("--aggregation", choices=("centered_clip", "trimmed_mean", "mean"),
                        help="how the clients' gradients are combined (default centered_clip)")
    create.add_argument("--eval-every", type=int, metavar="N", help="evaluate on the test split every N iterations")
    create.add_argument("--seed", type=int, help="random seed of the initial parameters")
    create.add_argument("--start", action="store_true", help="start it at once (default: created paused)")
    add_client_options(create)
    create.set_defaults(run=run_create)

    listing = actions.add_parser("list", help="every project with its status and latest figures")
    add_client_options(listing)
    listing.set_defaults(run=run_list)

    for name, run, text in (("show", run_show, "a project's details and workers"),
                            ("start", run_start, "start training (volunteers see it)"),
                            ("pause", run_pause, "pause training (a checkpoint is written)"),
                            ("delete", run_delete, "delete a project and its checkpoint")):
        command = actions.add_parser(name, help=text)
        command.add_argument("id", metavar="ID", help="project id (`mlitb project list`)")
        add_client_options(command)
        command.set_defaults(run=run)

    change = actions.add_parser("set", help="change hyper-parameters of a project, live")
    change.add_argument("id", metavar="ID", help="project id")
    change.add_argument("values", nargs="+", metavar="KEY=VALUE",
                        help="name=..., description=..., iteration_ms=..., aggregation=..., or an optimizer "
                             "hyper-parameter (learning_rate=0.01)")
    add_client_options(change)
    change.set_defaults(run=run_set)

    closure = actions.add_parser("closure", help="download the research closure (model, state, history)")
    closure.add_argument("id", metavar="ID", help="project id")
    closure.add_argument("-o", "--output", metavar="FILE", help="write it here (default: standard output)")
    add_client_options(closure, json_output=False)
    closure.set_defaults(run=run_closure)

    metrics = actions.add_parser("metrics", help="loss and test accuracy, one line per evaluation")
    metrics.add_argument("id", metavar="ID", help="project id")
    metrics.add_argument("--follow", "-f", action="store_true", help="keep printing new evaluations until Ctrl-C")
    metrics.add_argument("--count", type=int, metavar="N", help="stop after printing N lines (with --follow)")
    metrics.add_argument("--all", action="store_true", help="one line per iteration, not per evaluation")
    add_client_options(metrics)
    metrics.set_defaults(run=run_metrics)


# ---------------------------------------------------------------- lines


def _percent(value: Any) -> str:
    return f"{value * 100:.1f}%" if isinstance(value, (int, float)) else "-"


def _loss(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) else "-"


def project_line(p: dict[str, Any]) -> str:
    m = p.get("metrics") or {}
    return (f"{p['id']}  {p['status']:<7}  iteration {p['iteration']:<6}  {p['trainers']} trainers  "
            f"test accuracy {_percent(m.get('test_accuracy'))}  dataset {p['dataset']}  {p['name']!r}")


def project_text(p: dict[str, Any]) -> str:
    opt = ", ".join(f"{k}={v}" for k, v in p["optimizer"].items() if k != "name")
    lines = [project_line(p), (f"  {p['param_count']:,} parameters, T={p['iteration_ms']} ms, "
                               f"{p['optimizer']['name']} ({opt}), evaluation every {p['eval_every']} iterations")]
    if p.get("error"):
        lines.append(f"  error: {p['error'].get('message')}")
    for w in p.get("workers", []):
        lines.append(f"  worker {w['id']}: {w['kind']} {w['engine']} {w['state']}, "
                     f"{w.get('examples_per_s') or 0:,.0f} examples/s, {w['accepted']} accepted")
    return "\n".join(lines)


def metric_line(m: dict[str, Any]) -> str:
    test = (f", test loss {_loss(m.get('test_loss'))}, test accuracy {_percent(m.get('test_accuracy'))}"
            if m.get("test_accuracy") is not None else "")
    rate = m.get("examples_per_s")
    return (f"iteration {m['iteration']}: train loss {_loss(m.get('train_loss'))}{test}, "
            f"{rate or 0:,.0f} examples/s")


# ---------------------------------------------------------------- commands


def _read_json(path: str, what: str) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise CliError(f"cannot read {what} {path}: {exc.strerror}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise CliError(f"{what} {path} is not JSON ({exc}): give a JSON file") from None


def _dataset(client, wanted: str | None) -> dict[str, Any]:
    from mlitb.data.client import DataClient

    datasets = DataClient(client.data_url()).list()
    if wanted:
        for d in datasets:
            if d["id"] == wanted:
                return d
        raise CliError(f"no dataset {wanted!r} on the master's data server; `mlitb data list` shows them")
    if len(datasets) == 1:
        return datasets[0]
    named = [d for d in datasets if d["name"] == "mnist"]
    if named:
        return named[0]
    raise CliError("choose a dataset with --dataset ID: " + (", ".join(d["id"] for d in datasets) or "there is none; "
                   "upload one with `mlitb data add ZIP`"))


def run_create(args: argparse.Namespace) -> int:
    with master(args) as client:
        rates = _read_rates(args.lr_multipliers)
        if args.closure and (args.new_head or args.dataset):  # transfer learning (issue 15)
            from mlitb.transfer_cli import transfer_body

            dataset = _dataset(client, args.dataset)
            try:
                body = transfer_body(args.closure, dataset["id"], new_head=args.new_head, name=args.name,
                                     lr_multipliers=rates)
            except (OSError, ValueError) as exc:
                raise CliError(f"cannot read {args.closure}: {exc}") from None
            optimizer = parse_assignments(args.hyper) | ({"name": args.optimizer} if args.optimizer else {})
            if optimizer:
                body["optimizer"] = optimizer
            for key in ("description", "iteration_ms", "aggregation", "eval_every", "seed"):
                if getattr(args, key) is not None:
                    body[key] = getattr(args, key)
            created = client.create(body)
        elif args.closure:
            from mlitb.cli.model import check_closure_argument

            check_closure_argument(args.closure, "mlitb project create --from CLOSURE")
            try:
                body = Path(args.closure).read_bytes()
            except OSError as exc:
                raise CliError(f"cannot read {args.closure}: {exc.strerror}") from None
            created = client.create_from_closure(body)
        else:
            dataset = _dataset(client, args.dataset)
            if args.layers:
                layers = _read_json(args.layers, "layers file")
                layers = layers.get("layers") if isinstance(layers, dict) else layers
                label = Path(args.layers).stem
            else:
                label = args.template or "convnet"
                layers = fit(templates()[label], dataset["shape"], len(dataset["classes"]))
            body: dict[str, Any] = {"name": args.name or f"{label} on {dataset['name']}", "dataset": dataset["id"],
                                    "layers": layers}
            optimizer = parse_assignments(args.hyper) | ({"name": args.optimizer} if args.optimizer else {})
            if optimizer:
                body["optimizer"] = optimizer
            for key in ("description", "iteration_ms", "aggregation", "eval_every", "seed"):
                if getattr(args, key) is not None:
                    body[key] = getattr(args, key)
            if rates is not None:
                body["lr_multipliers"] = rates
            try:
                created = client.create(body)
            except ApiError as exc:
                if exc.status == 400 and not args.layers and "layer" in str(exc):
                    raise ApiError(f"{exc}; the {label} template does not fit {dataset['name']}'s "
                                   f"{dataset['shape'][1]}x{dataset['shape'][0]} images: try another template "
                                   "(mlp, softmax) or --layers FILE") from None
                raise
        if args.start:
            created = client.action(created["id"], "start")
    emit(args, created, f"created {created['id']} ({created['status']}): {created['param_count']:,} parameters "
                        f"on {created['dataset']}\nvolunteers: {client.url}/?project={created['id']}")
    return 0


def _read_rates(text: str | None) -> list[float] | None:
    if text is None:
        return None
    try:
        rates = json.loads(text)
    except ValueError:
        rates = None
    if not isinstance(rates, list):
        raise CliError(f"--lr-multipliers must be a JSON list with one number per layer, e.g. [1,0,1], got {text!r}")
    return rates


def run_list(args: argparse.Namespace) -> int:
    with master(args) as client:
        projects = client.projects()
    emit(args, projects, "\n".join(project_line(p) for p in projects) or f"no projects at {client.url}")
    return 0


def run_show(args: argparse.Namespace) -> int:
    with master(args) as client:
        project = client.project(args.id)
    emit(args, project, project_text(project))
    return 0


def _action(args: argparse.Namespace, action: str) -> int:
    with master(args) as client:
        project = client.action(args.id, action)
    emit(args, project, project_line(project))
    return 0


def run_start(args: argparse.Namespace) -> int:
    return _action(args, "start")


def run_pause(args: argparse.Namespace) -> int:
    return _action(args, "pause")


def run_set(args: argparse.Namespace) -> int:
    body = patch_body(parse_assignments(args.values))
    with master(args) as client:
        project = client.patch(args.id, body)
    emit(args, project, project_text(project))
    return 0


def run_delete(args: argparse.Namespace) -> int:
    with master(args) as client:
        client.delete(args.id)
    emit(args, {"deleted": args.id}, f"deleted project {args.id}")
    return 0


def run_closure(args: argparse.Namespace) -> int:
    with master(args) as client:
        data = client.closure(args.id)
    if args.output:
        try:
            Path(args.output).write_bytes(data)
        except OSError as exc:
            raise CliError(f"cannot write {args.output}: {exc.strerror}") from None
        print(f"wrote {args.output} ({len(data) / 2**20:.1f} MiB)", file=sys.stderr)
    else:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    return 0


def run_metrics(args: argparse.Namespace) -> int:
    """Past records, then with --follow new ones as the master makes them (polled once per iteration time)."""
    shown = 0
    live = sys.stdout.isatty() and args.follow and not args.json
    with master(args) as client:
        project = client.project(args.id)
        interval = max(0.5, project["iteration_ms"] / 1000)
        since = 0
        while True:
            records = client.metrics(args.id, since)
            for record in records:
                if args.all or record.get("test_accuracy") is not None:
                    if live:
                        sys.stdout.write("\r\x1b[K")
                    print(json.dumps(record) if args.json else metric_line(record), flush=True)
                    shown += 1
                    if args.follow and args.count is not None and shown >= args.count:
                        return 0
                elif live:
                    sys.stdout.write("\r\x1b[K" + metric_line(record))
                    sys.stdout.flush()
            since = (records[-1]["iteration"] + 1) if records else since
            if not args.follow:
                return 0
            time.sleep(interval)
