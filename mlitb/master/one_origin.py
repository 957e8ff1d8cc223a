"""The master and the data server on one origin: the data API under `/data/`, everything else the master.

One URL then works for every volunteer, through any reverse proxy or TLS
terminator, with one port to expose. Starlette does not run a mounted app's
lifespan, so this app runs both (the master's loads and checkpoints projects;
the data app's ingests the shipped datasets when asked to).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from starlette.applications import Starlette
from starlette.routing import Mount

DATA_PREFIX = "/data"


def one_origin(master: Starlette, data: Starlette, prefix: str = DATA_PREFIX) -> Starlette:
    """An app serving `data` under `prefix` and `master` at every other path (its WebSocket included)."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            for inner in (data, master):
                await stack.enter_async_context(inner.router.lifespan_context(inner))
            yield

    app = Starlette(routes=[Mount(prefix, app=data), Mount("/", app=master)], lifespan=lifespan)
    app.state.master = master
    app.state.data = data
    return app
