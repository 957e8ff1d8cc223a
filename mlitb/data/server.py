"""`mlitb data serve`: the data server alone, on its own port, on the configured store."""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import signal
import sys

import uvicorn

from mlitb import logs
from mlitb.config import ConfigError, from_env
from mlitb.data.app import create_data_app
from mlitb.data.limits import Limits
from mlitb.http_protocol import OwnSignalsServer, protocol_options
from mlitb.store import StoreUnavailable, open_store


def run(args: argparse.Namespace) -> int:
    """Serve until interrupted. Admin token from MLITB_ADMIN_TOKEN, else a fresh one printed once."""
    logs.setup(getattr(args, "log_level", "info"))
    token = os.environ.get("MLITB_ADMIN_TOKEN")
    if not token:
        token = secrets.token_urlsafe(18)
        print(f"admin token (set MLITB_ADMIN_TOKEN to choose one): {token}", file=sys.stderr)
    try:
        limits = from_env(Limits, os.environ)
    except ConfigError as exc:
        print(f"mlitb data serve: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(_serve(args, token, limits))
    except StoreUnavailable as exc:
        print(f"mlitb data serve: {exc}", file=sys.stderr)
        return 1
    return 0


async def _serve(args: argparse.Namespace, token: str, limits: Limits) -> None:
    store = await open_store(args.data_dir, args.redis)
    try:
        app = create_data_app(store, token, limits=limits)
        options = protocol_options(limits.http_read_timeout_s, limits.http_idle_timeout_s)  # slow-loris deadline
        config = uvicorn.Config(app, host=args.host, port=args.port, log_level=getattr(args, "log_level", "info"),
                                log_config=None, access_log=False, proxy_headers=True, **options)
        # Our own SIGINT/SIGTERM handling: uvicorn re-raises a captured signal after its graceful
        # shutdown, which would end a clean stop with status 130 instead of 0.
        server = OwnSignalsServer(config)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, setattr, server, "should_exit", True)
        await server.serve()
    finally:
        await store.close()
