"""Floods against a master with its DoS limits off and on, side by side in one run.

    python bench/dos.py

Starts the master twice in a subprocess (an empty file store, no data server:
the floods need none): `off` with every limit raised out of reach, uvicorn's
plain HTTP and WebSocket protocols and glibc tuned to keep freed memory (what
`Net()` did to the master before); `on` with the defaults (the header
deadline lowered to 2 s so the slow-loris row ends quickly). For each flood it
polls `/healthz` throughout and reports its latency (p50, p99), the master's
peak RSS growth (VmHWM, reset before each flood) and what the flood's requests
got. Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.helpers import free_port, wait_for_port
from tests.raw_clients import oversized_ws_frame, post_streamed

MILLION = b'{"layers": [' + b'{"type": "relu"},' * 1_000_000 + b'{"type": "softmax", "num_classes": 2}]}'
HUGE = json.dumps({"layers": [{"type": "input", "out_sx": 28, "out_sy": 28, "out_depth": 1},
                              {"type": "fc", "num_neurons": 1_000_000_000}, {"type": "softmax", "num_classes": 10}]}).encode()


# ------------------------------------------------------------------ the master, in its own process

def serve(mode: str, port: int, data_dir: str) -> None:
    import uvicorn

    from mlitb.http_protocol import protocol_options
    from mlitb.master.app import create_master_app
    from mlitb.master.settings import Settings
    from mlitb.model.memory import retain_freed_memory
    from mlitb.store import FileStore

    if mode == "off":
        retain_freed_memory()
        settings = Settings(admin_token="bench", data_url="http://127.0.0.1:1", max_body_bytes=1 << 40,
                            max_closure_bytes=1 << 40, max_control_bytes=64 << 20, max_layers=10**9,
                            max_params=10**15, http_read_timeout_s=1e6, hello_timeout_s=1e6)
        options = {"http": "h11", "ws": "websockets-sansio", "ws_max_size": 64 << 20}
    else:
        settings = Settings(admin_token="bench", data_url="http://127.0.0.1:1", http_read_timeout_s=2.0)
        options = {**protocol_options(settings.http_read_timeout_s, settings.http_idle_timeout_s),
                   "ws_max_size": settings.max_frame_bytes}
    app = create_master_app(settings, FileStore(Path(data_dir)))
    uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="critical", lifespan="on",
                                  **options)).run()


# ------------------------------------------------------------------ the floods

async def layers_million(url: str) -> list[str]:
    answers = await asyncio.gather(*(post_streamed(url, "/api/layers/check", MILLION, timeout=300) for _ in range(2)))
    return [str(a.status) for a in answers]


async def params_795e9(url: str) -> list[str]:
    answers = await asyncio.gather(*(post_streamed(url, "/api/layers/check", HUGE, timeout=300) for _ in range(8)))
    return [str(a.status) for a in answers]


async def ws_garbage(url: str) -> list[str]:
    ws_url = url.replace("http://", "ws://") + "/ws"
    refusals = await asyncio.gather(*(oversized_ws_frame(ws_url, declared=60 << 20) for _ in range(8)))
    return [(r.error or {}).get("code") or f"close {r.close_code}, {r.sent >> 20} MiB sent" for r in refusals]


async def slow_loris(url: str) -> list[str]:
    host, port = url.removeprefix("http://").split(":")
    conns = [await asyncio.open_connection(host, int(port)) for _ in range(200)]
    for _reader, writer in conns:  # headers that never end
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: a\r\n")
    await asyncio.sleep(6)  # three times the `on` header deadline: how many are still open?
    still_open = 0
    for reader, writer in conns:
        try:
            data = await asyncio.wait_for(reader.read(1 << 16), 0.05)
            closed = data == b"" or data.startswith(b"HTTP/1.1 408")
        except TimeoutError:
            closed = False
        except ConnectionError:
            closed = True
        still_open += not closed
        writer.close()
    return [f"{still_open} of 200 open after 6 s"]


FLOODS = {"layers/check 1M layers x2": layers_million, "795e9-parameter model x8": params_795e9,
          "WebSocket 60 MiB garbage x8": ws_garbage, "slow-loris x200": slow_loris}


def _status_of(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(field)


async def measure(url: str, pid: int, flood) -> dict:
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    baseline = _status_of(pid, "VmRSS")
    latencies: list[float] = []
    done = asyncio.Event()

    async def poll() -> None:
        async with httpx.AsyncClient(base_url=url, timeout=120) as api:
            while not done.is_set():
                start = time.perf_counter()
                await api.get("/healthz")
                latencies.append((time.perf_counter() - start) * 1000)
                await asyncio.sleep(0.01)

    poller = asyncio.create_task(poll())
    outcome = await flood(url)
    done.set()
    await poller
    latencies.sort()
    return {"healthz_p50_ms": statistics.median(latencies),
            "healthz_p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
            "healthz_max_ms": latencies[-1], "rss_growth_mib": (_status_of(pid, "VmHWM") - baseline) / 2**20,
            "answers": sorted(set(outcome), key=outcome.index), "polls": len(latencies)}


async def bench(mode: str) -> dict[str, dict]:
    port = free_port()
    with tempfile.TemporaryDirectory() as data_dir:
        proc = subprocess.Popen([sys.executable, __file__, "--serve", mode, str(port), data_dir], cwd=REPO,
                                env={**os.environ, "PYTHONPATH": str(REPO)})
        try:
            wait_for_port(port, process=proc)
            url = f"http://127.0.0.1:{port}"
            return {name: await measure(url, proc.pid, flood) for name, flood in FLOODS.items()}
        finally:
            proc.terminate()
            proc.wait(timeout=20)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--serve", nargs=3, metavar=("MODE", "PORT", "DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve[0], int(args.serve[1]), args.serve[2])
        return
    results = {mode: asyncio.run(bench(mode)) for mode in ("off", "on")}
    print(f"{'flood':30} {'limits':6} {'healthz p50':>11} {'p99':>9} {'max':>9} {'RSS +MiB':>9}  answers")
    for name in FLOODS:
        for mode in ("off", "on"):
            r = results[mode][name]
            print(f"{name:30} {mode:6} {r['healthz_p50_ms']:9.1f}ms {r['healthz_p99_ms']:7.1f}ms "
                  f"{r['healthz_max_ms']:7.1f}ms {r['rss_growth_mib']:9.0f}  {', '.join(r['answers'])}")
    summary = {name: {"p99_ratio_off_over_on": round(results["off"][name]["healthz_p99_ms"]
                                                     / max(results["on"][name]["healthz_p99_ms"], 1e-3), 1),
                      "rss_off_mib": round(results["off"][name]["rss_growth_mib"]),
                      "rss_on_mib": round(results["on"][name]["rss_growth_mib"])} for name in FLOODS}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
