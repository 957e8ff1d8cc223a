"""One port by default: the data API under /data/ on the master's origin, URLs from --public-url.

The test talks to 127.0.0.1 while the master believes it is reached at
https://mlitb.example.org (as behind a TLS proxy): every URL it hands to
browsers and workers must be the public one.
"""

from __future__ import annotations

import argparse
import asyncio

import httpx
import websockets

from mlitb.master.serve import urls
from tests.cli_support import Serve
from tests.helpers import poll_until
from tests.master_support import Trainer

PUBLIC = "https://mlitb.example.org"


def _args(**given) -> argparse.Namespace:
    return argparse.Namespace(**{"host": "127.0.0.1", "port": 8000, "data_port": None, "public_url": None, **given})


def test_the_data_url_follows_the_public_url_the_host_and_the_data_port():
    assert urls(_args(), {}).data == "http://127.0.0.1:8000/data"
    assert urls(_args(public_url=PUBLIC + "/"), {}).data == PUBLIC + "/data"
    # Behind a wildcard host without a public URL: a path, which each client resolves against the URL it used.
    assert urls(_args(host="0.0.0.0"), {}).data == "/data"
    assert urls(_args(public_url=PUBLIC, data_port=8001), {}).data == "https://mlitb.example.org:8001"
    assert urls(_args(data_port=0), {"MLITB_DATA_URL": "http://data:8001"}).data == "http://data:8001"


async def test_one_port_with_a_public_url(tmp_path, mnist_dir):
    serve = Serve(tmp_path / "home", ("--public-url", PUBLIC, "--workers", "1")).start(mnist_dir)
    try:
        async with httpx.AsyncClient(base_url=serve.url, timeout=30) as http:
            config = (await http.get("/api/config")).json()
            assert config["data_url"] == f"{PUBLIC}/data"
            (page, wasm, datasets) = [await http.get(path) for path in ("/", "/engine/kernels.wasm", "/data/datasets")]
            assert page.status_code == 200 and "<html" in page.text.lower()
            assert wasm.status_code == 200 and wasm.content[:4] == b"\0asm"
            (mnist,) = [d for d in datasets.json()["datasets"] if d["name"] == "mnist"]
            shard_id = mnist["splits"]["train"]["shards"][0]["id"]
            shard = await http.get(f"/data/datasets/{mnist['id']}/shards/{shard_id}")
            assert shard.status_code == 200 and shard.headers["etag"] == f'"{shard_id}"'
        async with websockets.connect(serve.url.replace("http", "ws") + "/ws") as ws:
            welcome = await Trainer(ws, config["data_url"]).hello(config["default_project"])
        assert welcome["dataset"]["url"] == f"{PUBLIC}/data"

        def local_worker_joined() -> bool:
            workers = httpx.get(f"{serve.url}/api/projects/{config['default_project']}", timeout=30).json()["workers"]
            return any(w["kind"] == "python" for w in workers)

        await asyncio.to_thread(poll_until, local_worker_joined, timeout=60, what="serve --workers 1 joins the demo")
    finally:
        output = serve.stop()
    assert f"master at {PUBLIC}/" in output and f"mlitb worker --master {PUBLIC}" in output
    assert "127.0.0.1" not in output.split("master at", 1)[1].splitlines()[0]
