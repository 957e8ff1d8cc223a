"""`mlitb serve`: the whole system in one process, ready to train on first start.

The master and the data server run as two uvicorn servers in one asyncio
loop on two ports (in production they run as separate processes). First
start ingests the shipped MNIST, creates a running demo project on it and
prints a fresh admin token once; later starts resume whatever the store
holds. SIGINT/SIGTERM stop both servers gracefully, which writes every
project's final checkpoint.
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
from collections.abc import Iterator

import uvicorn

from mlitb.config import ConfigError, from_env
from mlitb.data.app import create_data_app
from mlitb.data.catalog import ensure_shipped_datasets, list_datasets
from mlitb.data.limits import Limits
from mlitb.http_protocol import protocol_options
from mlitb.master.app import create_master_app
from mlitb.master.definition import parse_create
from mlitb.master.registry import definition_key
from mlitb.master.settings import Settings
from mlitb.model.zoo import MNIST_CONVNET
from mlitb.store import Store, StoreError, StoreUnavailable, open_store

TOKEN_KEY = "master/admin_token"
DEMO_LAYERS = MNIST_CONVNET
DEMO_ITERATION_MS = 1500


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signals to `run`, which stops both servers together."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def run(args: argparse.Namespace) -> int:
    # Warnings an operator must see (a store outage and its end) get a timestamp and their source.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return asyncio.run(_serve(args))
    except (StoreUnavailable, StoreError, ConfigError) as exc:
        print(f"mlitb serve: {exc}", file=sys.stderr)
        return 2


async def _serve(args: argparse.Namespace) -> int:
    if not args.data_port and not os.environ.get("MLITB_DATA_URL"):
        print("mlitb serve: --data-port 0 runs no data server here: set MLITB_DATA_URL to the one workers "
              "should use (e.g. http://data.example.org:8001)", file=sys.stderr)
        return 1
    try:
        sockets = [_listen(args.host, port) for port in (args.port, args.data_port) if port]
    except OSError as exc:
        print(f"mlitb serve: cannot listen on {args.host} ports {args.port} and {args.data_port}: {exc.strerror} "
              "(choose others with --port and --data-port)", file=sys.stderr)
        return 1
    limits = from_env(Limits, os.environ)
    store = await open_store(args.data_dir, args.redis)
    try:
        token = await admin_token(store)
        public_host = "127.0.0.1" if args.host in ("0.0.0.0", "::", "") else args.host
        master_url = f"http://{public_host}:{args.port}"
        data_url = os.environ.get("MLITB_DATA_URL") or f"http://{public_host}:{args.data_port}"
        settings = from_env(Settings, os.environ, admin_token=token, data_url=data_url, **_checkpoint_settings(args))
        print("mlitb: preparing the shipped datasets (first start takes a few seconds)...", flush=True)
        await ensure_shipped_datasets(store)
        await ensure_demo_project(store, settings)
        master = _Server(_config(create_master_app(settings, store), args.host, args.port, settings))
        data = _Server(_config(create_data_app(store, token, limits=limits, bootstrap=False), args.host, args.data_port, settings))
        servers = [master, data] if args.data_port else [master]
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, _stop, servers)
        tasks = [asyncio.create_task(server.serve(sockets=[sock])) for server, sock in zip(servers, sockets)]
        workers: list[subprocess.Popen] = []
        try:
            while not all(server.started for server in servers):
                if any(task.done() for task in tasks):
                    _stop(servers)
                    await asyncio.gather(*tasks)
                    return 1
                await asyncio.sleep(0.05)
            print(f"mlitb: master at {master_url}/  data server at {data_url}/", flush=True)
            workers = [_start_worker(master_url) for _ in range(args.workers)]
            await asyncio.gather(*tasks)
        finally:
            _stop_workers(workers)
        return 0
    finally:
        await store.close()
        for sock in sockets:
            sock.close()


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


def _config(app, host: str, port: int, settings: Settings) -> uvicorn.Config:
    return uvicorn.Config(
        app, host=host, port=port, log_level="warning", lifespan="on",
        ws_max_size=settings.max_frame_bytes, ws_ping_interval=settings.ping_interval_s,
        ws_ping_timeout=settings.ping_timeout_s,
        # Slow-loris deadline, idle keep-alive, and uvicorn's websockets-sansio backend with a message limit
        # that follows each connection's state (http_protocol.py, ws_protocol.py).
        **protocol_options(settings.http_read_timeout_s, settings.http_idle_timeout_s),
    )


def _stop(servers: list[uvicorn.Server]) -> None:
    for server in servers:
        server.should_exit = True


def _start_worker(master_url: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "mlitb.cli", "worker", "--master", master_url])


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
