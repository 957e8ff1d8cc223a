"""`mlitb serve`: the whole system in one process, ready to train on first start.

By default the data API is mounted under `/data/` on the master's own port
(one_origin.py), so one URL works for every volunteer and behind any proxy;
`--data-port N` runs it as a second uvicorn server on its own port, and
`--data-port 0` runs none (workers use MLITB_DATA_URL). First start ingests
the shipped MNIST, creates a running demo project on it and prints a fresh
admin token once (with the file store also written, mode 0600, to
DATA_DIR/admin-token for the local CLI); later starts resume whatever the
store holds. With the file store a lock file keeps a second `serve` off the
same data directory. SIGINT/SIGTERM stop every server
gracefully, which writes every project's final checkpoint.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import uvicorn

from mlitb import logs
from mlitb.api_client import ApiError, check_base_url
from mlitb.config import ConfigError, from_env
from mlitb.data.app import create_data_app
from mlitb.data.catalog import ensure_shipped_datasets, list_datasets
from mlitb.data.limits import Limits
from mlitb.http_protocol import OwnSignalsServer, protocol_options
from mlitb.master.activity import ActivityLog, watch
from mlitb.master.app import create_master_app
from mlitb.master.cluster import cluster_from_env
from mlitb.master.definition import parse_create
from mlitb.master.lock import DataDirLock, LockHeld
from mlitb.master.one_origin import DATA_PREFIX, one_origin
from mlitb.master.registry import definition_key
from mlitb.master.settings import Settings
from mlitb.model.zoo import MNIST_CONVNET
from mlitb.store import Store, StoreError, StoreUnavailable, open_store

TOKEN_KEY = "master/admin_token"
TOKEN_FILE = "admin-token"  # mlitb.cli.common reads it
DEMO_LAYERS = MNIST_CONVNET
DEMO_ITERATION_MS = 1500
WILDCARD_HOSTS = ("0.0.0.0", "::", "")
log = logging.getLogger("mlitb.serve")


@dataclass(frozen=True)
class Urls:
    """Where people reach this master and its data API.

    `public` is what the banner prints and local workers use; `data` is what
    welcome and /api/config give to browsers and workers. Behind a wildcard
    host without --public-url the one-port data URL is the path `/data`, which
    every client resolves against the URL it reached the master at, so it is
    right through any proxy.
    """

    public: str
    data: str
    local: str


def urls(args: argparse.Namespace, environ: dict[str, str]) -> Urls:
    local_host = "127.0.0.1" if args.host in WILDCARD_HOSTS else args.host
    local = f"http://{'[' + local_host + ']' if ':' in local_host else local_host}:{args.port}"
    public = check_base_url(args.public_url, "--public-url") if args.public_url else None
    if environ.get("MLITB_DATA_URL"):
        data = check_base_url(environ["MLITB_DATA_URL"], "MLITB_DATA_URL")
    elif args.data_port:
        parts = urlsplit(public) if public else None
        data = f"{parts.scheme}://{parts.hostname}:{args.data_port}" if parts else f"http://{local_host}:{args.data_port}"
    elif public:
        data = public + DATA_PREFIX
    elif args.host in WILDCARD_HOSTS:
        data = DATA_PREFIX
    else:
        data = local + DATA_PREFIX
    return Urls(public=public or local, data=data, local=local)


def run(args: argparse.Namespace) -> int:
    logs.setup(getattr(args, "log_level", "info"))
    # The file store's directory is this process's alone; with Redis the masters' leases arbitrate instead.
    lock = None if args.redis else DataDirLock(Path(args.data_dir))
    try:
        if lock is not None:
            lock.acquire()
        return asyncio.run(_serve(args))
    except ConfigError as exc:
        print(f"mlitb serve: {exc}", file=sys.stderr)
        return 2
    except (StoreUnavailable, StoreError, LockHeld, ApiError) as exc:
        print(f"mlitb serve: {exc}", file=sys.stderr)
        return 1
    finally:
        if lock is not None:
            lock.release()


async def _serve(args: argparse.Namespace) -> int:
    if args.data_port == 0 and not os.environ.get("MLITB_DATA_URL"):
        print("mlitb serve: --data-port 0 runs no data server here: set MLITB_DATA_URL to the one workers "
              "should use (e.g. http://data.example.org:8001), or leave --data-port out to serve it under /data/",
              file=sys.stderr)
        return 1
    where = urls(args, dict(os.environ))
    sockets: list[socket.socket] = []
    for option, port in (("--port", args.port), ("--data-port", args.data_port)):
        if not port:
            continue
        try:
            sockets.append(_listen(args.host, port))
        except OSError as exc:
            for sock in sockets:
                sock.close()
            print(f"mlitb serve: cannot listen on {args.host}:{port} ({option}): {exc.strerror}; "
                  f"choose another with {option} PORT", file=sys.stderr)
            return 1
    limits = from_env(Limits, os.environ)
    store = await open_store(args.data_dir, args.redis)
    try:
        token = await admin_token(store)
        if not args.redis:
            write_token_file(Path(args.data_dir), token)
        settings = from_env(Settings, os.environ, admin_token=token, data_url=where.data, **_checkpoint_settings(args))
        print("mlitb: preparing the shipped datasets (first start takes a few seconds)...", flush=True)
        await ensure_shipped_datasets(store)
        await ensure_demo_project(store, settings)
        # Several masters on one Redis (cluster.py): only with a public URL; None keeps the single master.
        cluster = cluster_from_env(args.redis, getattr(args, "public_url", None), store, os.environ)
        master_app = create_master_app(settings, store, cluster)
        data_app = create_data_app(store, token, limits=limits, bootstrap=False)
        if args.data_port is None:
            servers = [OwnSignalsServer(_config(one_origin(master_app, data_app), args, args.port, settings))]
        else:
            servers = [OwnSignalsServer(_config(master_app, args, args.port, settings))]
            if args.data_port:
                servers.append(OwnSignalsServer(_config(data_app, args, args.data_port, settings)))
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, _stop, servers)
        tasks = [asyncio.create_task(server.serve(sockets=[sock])) for server, sock in zip(servers, sockets)]
        workers: list[subprocess.Popen] = []
        activity: asyncio.Task | None = None
        try:
            while not all(server.started for server in servers):
                if any(task.done() for task in tasks):
                    _stop(servers)
                    await asyncio.gather(*tasks)
                    return 1
                await asyncio.sleep(0.05)
            _banner(args, where)
            activity = asyncio.create_task(watch(master_app.state.registry, ActivityLog(max(1, args.progress_every))))
            if args.workers:
                # The project the master's own pages default to (a worker alone would refuse to guess among several).
                default = master_app.state.registry.default_project()
                if default is None:
                    log.warning("--workers %d: no project to join yet; start workers later with mlitb worker", args.workers)
                else:
                    workers = [_start_worker(where.local, default.id) for _ in range(args.workers)]
            await asyncio.gather(*tasks)
        finally:
            if activity is not None:
                activity.cancel()
            _stop_workers(workers)
        return 0
    finally:
        await store.close()
        for sock in sockets:
            sock.close()


def _banner(args: argparse.Namespace, where: Urls) -> None:
    """The URLs people can reach: the public one, or this machine's address behind a wildcard host."""
    base = where.public
    if not args.public_url and args.host in WILDCARD_HOSTS:
        base = f"http://{_lan_address()}:{args.port}"
    data = where.data if "://" in where.data else base + where.data
    print(f"mlitb: master at {base}/  data server at {data}/", flush=True)
    print(f"mlitb: volunteers open {base}/  researchers {base}/dashboard.html  "
          f"grid workers: mlitb worker --master {base}", flush=True)
    if not args.public_url and args.host in WILDCARD_HOSTS:
        print("mlitb: behind a proxy or TLS, give the address people use with --public-url "
              "(or MLITB_PUBLIC_URL)", flush=True)


def _lan_address() -> str:
    """This machine's address on its default route (no packet is sent), else its host name."""
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("192.0.2.1", 9))  # TEST-NET-1: never routed anywhere, only selects the interface
        return probe.getsockname()[0]
    return socket.gethostname()


def write_token_file(data_dir: Path, token: str) -> None:
    """DATA_DIR/admin-token, readable by this user only, so `mlitb project ...` on this machine needs no --token."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / TOKEN_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(token + "\n")
    os.chmod(path, 0o600)


def _checkpoint_settings(args: argparse.Namespace) -> dict[str, float]:
    """`--checkpoint-every N` bounds what a crash loses to N iterations (and turns off the time rule)."""
    every = getattr(args, "checkpoint_every", None)
    return {"checkpoint_every": every, "checkpoint_interval_s": float("inf")} if every else {}


def _listen(host: str, port: int) -> socket.socket:
    """Bind before the slow first-start work, so a taken port fails at once and clearly."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


async def admin_token(store: Store) -> str:
    """MLITB_ADMIN_TOKEN, else the stored one, else a new one printed this once."""
    if os.environ.get("MLITB_ADMIN_TOKEN"):
        return os.environ["MLITB_ADMIN_TOKEN"]
    stored = await store.get(TOKEN_KEY)
    if stored:
        print("mlitb: admin token: the one printed on first start (or set MLITB_ADMIN_TOKEN)", flush=True)
        return stored.decode()
    token = secrets.token_urlsafe(24)
    await store.put(TOKEN_KEY, token.encode())
    print(f"mlitb: admin token (shown once, keep it): {token}", flush=True)
    return token


async def ensure_demo_project(store: Store, settings: Settings) -> None:
    """A running MNIST convnet project when the store has no project, so a newcomer sees training."""
    if await store.keys("projects/"):
        return
    mnist = [m for m in await list_datasets(store) if m.name == "mnist"]
    if not mnist:
        return
    manifest = mnist[0]
    definition, _net = parse_create(
        {"name": "MNIST demo", "dataset": manifest.id, "layers": DEMO_LAYERS, "iteration_ms": DEMO_ITERATION_MS,
         "optimizer": {"name": "adagrad", "learning_rate": 0.03, "l2_decay": 0.001}, "status": "running"},
        dataset_shape=tuple(manifest.shape), num_classes=len(manifest.classes),
        default_eval_every=settings.eval_every, iteration_range=(settings.min_iteration_ms, settings.max_iteration_ms))
    await store.put(definition_key(definition.id), definition.to_json())
    print(f"mlitb: created the demo project {definition.id!r} on {manifest.id}", flush=True)


def _config(app, args: argparse.Namespace, port: int, settings: Settings) -> uvicorn.Config:
    return uvicorn.Config(
        app, host=args.host, port=port, log_level=getattr(args, "log_level", "info"), log_config=None,
        access_log=False, lifespan="on",
        ws_max_size=settings.max_frame_bytes, ws_ping_interval=settings.ping_interval_s,
        ws_ping_timeout=settings.ping_timeout_s,
        # Behind a reverse proxy: trust its X-Forwarded-For/-Proto from these addresses only.
        proxy_headers=True, forwarded_allow_ips=getattr(args, "forwarded_allow_ips", None) or "127.0.0.1",
        # Slow-loris deadline, idle keep-alive, and uvicorn's websockets-sansio backend with a message limit
        # that follows each connection's state (http_protocol.py, ws_protocol.py).
        **protocol_options(settings.http_read_timeout_s, settings.http_idle_timeout_s),
    )


def _stop(servers: list[uvicorn.Server]) -> None:
    for server in servers:
        server.should_exit = True


def _start_worker(master_url: str, project: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "mlitb.cli", "worker", "--master", master_url, "--project", project])


def _stop_workers(workers: list[subprocess.Popen]) -> None:
    for proc in workers:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
    for proc in workers:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
