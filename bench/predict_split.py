"""Predictions served by the crowd: throughput with 0/1/2/4 workers, and the hot-spot effect, measured.

A master and data server run in a subprocess (this file in `--serve` mode: the real apps on real
uvicorn over a FileStore holding the shipped MNIST), with a paused project on the MNIST demo convnet;
`mlitb worker --predict-only` processes (one BLAS thread each, niced) answer its prediction chunks;
with `--browser`, also one headless Chromium tab on the volunteer page (JS engine, WASM SIMD), alone.

1. Throughput: 10,000 images of the shipped MNIST test set (its 2,000 digits five times) in one msgpack request, with 0 (the
   master's fallback process), 1, 2 and 4 workers: total latency and images/s, the ratio to 1 worker.
2. Hot spot: with W workers, small requests (8 images) from 4 concurrent clients, first on an idle
   master (unloaded), then for as long as a big batch (10,000 images) is in flight (only the requests
   answered before the batch count); p50/p99 of their latency.
   Once with the batch split into keyed chunks over the workers (the default), once with every
   request sent whole to one worker in turn (`predict_split=False`, the naive baseline).

    python bench/predict_split.py [--workers 0,1,2,4] [--hot-workers 2] [--small 200] [--chunk-ms 50] [--browser]

Prints a table, then one JSON line. Every figure depends on the cores free for the workers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import httpx
import msgpack
import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
TOKEN = "bench-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
       "MKL_NUM_THREADS": "1"}


# ------------------------------------------------------------ the master subprocess


def serve(port: int, data_port: int, directory: str, split: bool, chunk_ms: float) -> None:
    """`--serve`: master + data server on the shipped MNIST, with this bench's prediction settings."""
    import uvicorn

    from mlitb.data.app import create_data_app
    from mlitb.data.catalog import ensure_shipped_datasets
    from mlitb.master.app import create_master_app
    from mlitb.master.settings import Settings
    from mlitb.store import FileStore

    async def main() -> None:
        store = FileStore(Path(directory))
        await ensure_shipped_datasets(store)
        settings = Settings(admin_token=TOKEN, data_url=f"http://127.0.0.1:{data_port}", predict_split=split,
                            predict_chunk_ms=chunk_ms, predict_rate_per_minute=1e6, predict_rate_burst=10**6,
                            predict_chunk_timeout_ms=300_000)  # no resend: a slow machine is not a lost worker
        servers = [uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=p, log_level="warning"))
                   for app, p in ((create_data_app(store, TOKEN, bootstrap=False), data_port),
                                  (create_master_app(settings, store), port))]
        await asyncio.gather(*(s.serve() for s in servers))

    asyncio.run(main())


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def master(store: Path, split: bool, chunk_ms: float):
    port, data_port = free_port(), free_port()
    proc = subprocess.Popen([sys.executable, __file__, "--serve", str(port), str(data_port), str(store),
                             "1" if split else "0", str(chunk_ms)], env=ENV, cwd=REPO)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("the master did not start")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def create_project(url: str) -> str:
    from mlitb.model.zoo import MNIST_CONVNET

    datasets = httpx.get(f"{url}/api/config", timeout=10).json()
    data_url = datasets["data_url"]
    mnist = next(d for d in httpx.get(f"{data_url}/datasets", timeout=10).json()["datasets"] if d["name"] == "mnist")
    body = {"name": "bench", "dataset": mnist["id"], "layers": MNIST_CONVNET, "status": "paused"}
    return httpx.post(f"{url}/api/projects", json=body, headers=ADMIN, timeout=30).json()["id"]


@contextlib.contextmanager
def workers(url: str, project: str, count: int, tmp: Path):
    # Niced: in a deployment the workers are other machines; here they must not starve the master and
    # this client of the cores they share, or the table measures the scheduler of this machine.
    procs = [subprocess.Popen(["nice", "-n", "10", sys.executable, "-m", "mlitb.cli", "worker", "--master", url, "--project", project,
                               "--predict-only", "--cache-dir", str(tmp / f"cache-{i}")], env=ENV, cwd=REPO,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for i in range(count)]
    try:
        deadline = time.monotonic() + 120
        while httpx.get(f"{url}/api/projects/{project}", timeout=10).json()["predictors"] != count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{count} workers did not join")
            time.sleep(0.2)
        yield
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)


@contextlib.asynccontextmanager
async def browser_volunteer(url: str, project: str):
    """One headless Chromium tab on the volunteer page, one trainer, answering prediction requests."""
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path="/usr/bin/chromium",
                                                   args=["--no-sandbox", "--disable-gpu", "--no-first-run"])
        try:
            page = await browser.new_page()
            await page.goto(f"{url}/?project={project}")
            await page.wait_for_function("!document.getElementById('contribute').disabled")
            await page.fill("#trainers", "1")
            await page.click("#contribute")
            async with httpx.AsyncClient(base_url=url, timeout=10) as api:
                deadline = time.monotonic() + 120
                while (await api.get(f"/api/projects/{project}")).json()["predictors"] != 1:
                    if time.monotonic() > deadline:
                        raise RuntimeError("the browser did not join")
                    await asyncio.sleep(0.2)
            yield
        finally:
            await browser.close()


async def browser_batch(url: str, project: str, images: np.ndarray) -> dict:
    async with browser_volunteer(url, project):
        return await big_batch(url, project, images)


# ------------------------------------------------------------ requests


def mnist_test(count: int = 10_000) -> np.ndarray:
    """`count` digits of the shipped MNIST test set (2,000 of them, repeated) as uint8 (N, 28, 28, 1)."""
    with zipfile.ZipFile(REPO / "mlitb" / "datasets" / "mnist-test.zip") as archive:
        names = sorted(n for n in archive.namelist() if n.endswith(".png"))
        digits = np.stack([np.asarray(Image.open(io.BytesIO(archive.read(n))).convert("L"), np.uint8)[:, :, None]
                           for n in names])
    return np.resize(digits, (count, *digits.shape[1:]))


def body(batch: np.ndarray) -> bytes:
    return msgpack.packb({"shape": list(batch.shape), "pixels": batch.tobytes()}, use_bin_type=True)


async def timed_post(client: httpx.AsyncClient, project: str, content: bytes) -> tuple[float, dict]:
    started = time.perf_counter()
    response = await client.post(f"/api/projects/{project}/predict", content=content,
                                 headers={"Content-Type": "application/msgpack"})
    elapsed = time.perf_counter() - started
    if response.status_code != 200:
        raise RuntimeError(f"{response.status_code}: {response.text[:300]}")
    return elapsed, await asyncio.to_thread(response.json)  # a batch's answer is MBs: not on this loop


async def big_batch(url: str, project: str, images: np.ndarray) -> dict:
    async with httpx.AsyncClient(base_url=url, timeout=600) as client:
        await timed_post(client, project, body(images[:64]))  # warm-up: the workers' speeds are measured
        elapsed, answer = await timed_post(client, project, body(images))
    return {"s": elapsed, "images_per_s": len(images) / elapsed, "chunks": len(answer["chunks"])}


async def small_requests(url: str, project: str, images: np.ndarray, count: int, during: np.ndarray | None) -> dict:
    """8-image requests from 4 concurrent clients: `count` of them on an idle master, or, with `during`,
    as many as fit while that batch is predicted (only those answered before the batch count)."""
    small = body(images[:8])
    async with httpx.AsyncClient(base_url=url, timeout=600) as client:
        await timed_post(client, project, small)
        big = asyncio.create_task(timed_post(client, project, body(during))) if during is not None else None
        if big is not None:
            await asyncio.sleep(0.3)  # the batch is cut and in flight
        latencies: list[float] = []

        async def one_client() -> None:
            sent = 0
            while (big is None and sent < count // 4) or (big is not None and not big.done()):
                elapsed = (await timed_post(client, project, small))[0] * 1000
                sent += 1
                if big is None or not big.done():
                    latencies.append(elapsed)

        await asyncio.gather(*(one_client() for _ in range(4)))
        big_s = (await big)[0] if big is not None else None
    latencies.sort()
    return {"p50_ms": statistics.median(latencies), "p99_ms": latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
            "n": len(latencies), "batch_s": big_s}


# ------------------------------------------------------------ the runs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", default="0,1,2,4")
    parser.add_argument("--hot-workers", type=int, default=2)
    parser.add_argument("--small", type=int, default=200)
    parser.add_argument("--chunk-ms", type=float, default=50.0)
    parser.add_argument("--browser", action="store_true", help="also one headless Chromium volunteer, alone")
    args = parser.parse_args()
    images = mnist_test()
    print(f"{len(images)} test images; {os.cpu_count()} cores; load average {os.getloadavg()[0]:.2f}", flush=True)
    report: dict = {"throughput": {}, "hot_spot": {}}
    with tempfile.TemporaryDirectory() as directory:
        tmp = Path(directory)
        with master(tmp / "store-throughput", split=True, chunk_ms=args.chunk_ms) as url:
            project = create_project(url)
            for n in [int(w) for w in args.workers.split(",")]:
                with workers(url, project, n, tmp):
                    report["throughput"][n] = asyncio.run(big_batch(url, project, images))
                print(f"  {n} workers: {report['throughput'][n]}", flush=True)
            if args.browser:
                report["throughput"]["browser"] = asyncio.run(browser_batch(url, project, images))
                print(f"  browser: {report['throughput']['browser']}", flush=True)
        for split in (True, False):
            with master(tmp / f"store-{split}", split=split, chunk_ms=args.chunk_ms) as url:
                project = create_project(url)
                with workers(url, project, args.hot_workers, tmp):
                    asyncio.run(big_batch(url, project, images[:2000]))  # speeds measured
                    unloaded = asyncio.run(small_requests(url, project, images, args.small, None))
                    loaded = asyncio.run(small_requests(url, project, images, args.small, images))
            report["hot_spot"]["split" if split else "whole"] = {"unloaded": unloaded, "loaded": loaded}
            print(f"  {'split' if split else 'whole'}: unloaded {unloaded} loaded {loaded}", flush=True)
    one = report["throughput"].get(1)
    names = {0: "0 (master)", "browser": "1 browser"}
    print()
    print("10,000-image batch (MNIST test set, demo convnet)")
    print(f"{'workers':>10} {'total s':>8} {'images/s':>9} {'chunks':>7} {'vs 1 worker':>12}")
    for n, row in report["throughput"].items():
        ratio = f"{row['images_per_s'] / one['images_per_s']:.2f}x" if one else "-"
        print(f"{names.get(n, n):>10} {row['s']:8.2f} {row['images_per_s']:9.0f} {row['chunks']:7d} {ratio:>12}")
    print()
    print(f"8-image requests, 4 concurrent clients, {args.hot_workers} workers, with and without a 10,000-image batch in flight")
    print(f"{'mode':>6} {'unloaded p50':>13} {'unloaded p99':>13} {'loaded p50':>11} {'loaded p99':>11} {'p99 ratio':>10} {'batch s':>8} {'n loaded':>9}")
    for mode, row in report["hot_spot"].items():
        u, l = row["unloaded"], row["loaded"]
        print(f"{mode:>6} {u['p50_ms']:13.1f} {u['p99_ms']:13.1f} {l['p50_ms']:11.1f} {l['p99_ms']:11.1f} "
              f"{l['p99_ms'] / u['p99_ms']:9.1f}x {l['batch_s']:8.2f} {l['n']:9d}")
    if one and 4 in report["throughput"]:
        report["speedup_1_to_4"] = report["throughput"][4]["images_per_s"] / one["images_per_s"]
    print(json.dumps(report))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        serve(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5] == "1", float(sys.argv[6]))
    else:
        main()
