"""The master under socket load: `mlitb serve` in a subprocess, N scripted trainers over real WebSockets.

Each trainer says hello, reports its whole assignment as cached (no download), and answers every
`work` after `budget_ms` (standing in for compute, which it does not do) with a precomputed result of
the right size: one msgpack frame per iteration shared by all trainers, so the client process stays
cheap and this measures the master. Per configuration (N trainers x net of P parameters, T = 200 ms):

* it/s     iterations per second achieved; ideal 1000/T (an iteration closes at T or when all answered)
* late p50/p99  the boundary's lateness past the deadline, from the master's per-iteration record
                 (`iteration_ms - T`, /api/projects/{id}/metrics; negative: closed early, all answered)
* accepted / dropped / missed   results in the window (dropped: old/late/unsolicited; missed: not by
                 the deadline), from /metrics
* master CPU %  the `mlitb serve` process (utime+stime from /proc), 100 = one core

    python bench/master_load.py [--seconds 5] [--trainers 1,8,32,128] [--deflate] [--nets convnet,mlp]

With `--masters 1,2,3` it runs a tier instead (bench/master_tier.py): per M, a private redis-server,
M `mlitb serve` masters on it and M projects, one owned by each master, the same total trainers spread
evenly over them; per master and for the tier: accepted / expected, lateness, master CPU %, and
"trainers held" (the largest count whose results were >= 95 % accepted).

Prints a table, then one JSON line. The machine's load average is printed first and last: other
work on the machine moves every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository root, for `bench.`

from bench.load_clients import (  # noqa: E402
    ADMIN,
    NETS,
    T_MS,
    TOKEN,
    Frames,
    cpu_seconds,
    free_port,
    ingest_small_shards,
    own_cpu,
    stop_clients,
    trainer,
)


async def metric(api: httpx.AsyncClient, name: str, project: str) -> float:
    total = 0.0
    for line in (await api.get("/metrics")).text.splitlines():
        if line.startswith(name + "{") and f'project="{project}"' in line:
            total += float(line.split()[-1])
    return total


async def measure(api: httpx.AsyncClient, ws_url: str, pid: int, dataset: str, net: str, trainers: int,
                  seconds: float, compression: str | None) -> dict:
    layers, param_count = NETS[net]
    body = {"name": f"load-{net}-{trainers}", "dataset": dataset, "layers": layers, "iteration_ms": T_MS,
            "optimizer": {"name": "sgd", "learning_rate": 1e-6}, "status": "running", "eval_every": 1_000_000}
    response = await api.post("/api/projects", json=body, headers=ADMIN)
    response.raise_for_status()
    project = response.json()["id"]
    assert response.json()["param_count"] == param_count
    frames = Frames(param_count)
    events = [asyncio.Event() for _ in range(trainers)]
    params_at: list[float] = []
    tasks = [asyncio.create_task(trainer(ws_url, project, frames, events[i], params_at if i == 0 else None, compression))
             for i in range(trainers)]
    try:
        async with asyncio.timeout(60):
            await asyncio.gather(*(event.wait() for event in events))  # every trainer is training
        names = ("mlitb_iterations_total", "mlitb_results_accepted_total", "mlitb_results_dropped_total",
                 "mlitb_results_missed_total", "mlitb_iteration")
        before = [await metric(api, name, project) for name in names]
        cpu_before, start, seen = cpu_seconds(pid), time.perf_counter(), len(params_at)
        own_before = own_cpu()
        await asyncio.sleep(seconds)  # the measurement window (not synchronisation)
        cpu_after, wall = cpu_seconds(pid), time.perf_counter() - start
        own_after = own_cpu()
        after = [await metric(api, name, project) for name in names]
    finally:
        await stop_clients(tasks)
    records = (await api.get(f"/api/projects/{project}/metrics", params={"since": int(before[4])})).json()
    late = [r["iteration_ms"] - T_MS for r in records if r["iteration"] < after[4]]
    periods = np.diff(params_at[seen:]) * 1000 - T_MS if len(params_at) - seen > 2 else np.array([0.0])
    await api.delete(f"/api/projects/{project}", headers=ADMIN)
    iterations, accepted, dropped, missed = (after[i] - before[i] for i in range(4))
    return {
        "net": net, "P": param_count, "N": trainers, "it_s": iterations / wall, "ideal_it_s": 1000 / T_MS,
        "late_p50_ms": float(np.percentile(late, 50)) if late else None,
        "late_p99_ms": float(np.percentile(late, 99)) if late else None,
        "client_period_late_p99_ms": float(np.percentile(periods, 99)),
        "accepted": int(accepted), "expected": int(iterations * trainers), "dropped": int(dropped), "missed": int(missed),
        "master_cpu_pct": 100 * (cpu_after - cpu_before) / wall,
        "clients_cpu_pct": 100 * (own_after - own_before) / wall,
    }


async def main(args: argparse.Namespace) -> None:
    port, data_port = free_port(), free_port()
    data_dir = tempfile.mkdtemp(prefix="mlitb-load-")
    await ingest_small_shards(data_dir)
    # The scripted trainers answer with made-up gradients (the load is the point), so spot checks are off.
    env = {**os.environ, "MLITB_ADMIN_TOKEN": TOKEN, "MLITB_VERIFY_QUEUE": "0"}
    server = subprocess.Popen([sys.executable, "-m", "mlitb.cli", "serve", "--port", str(port), "--data-port",
                               str(data_port), "--data-dir", data_dir], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base, ws_url = f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}/ws"
    rows = []
    print(f"load average at start: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; T = {T_MS} ms, "
          f"window {args.seconds} s, client compression: {'deflate' if args.deflate else 'none'}", flush=True)
    try:
        async with httpx.AsyncClient(base_url=base, timeout=60) as api:
            deadline = time.monotonic() + 120
            while True:  # first start ingests the shipped MNIST
                try:
                    if (await api.get("/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"mlitb serve did not start: {server.stderr.read().decode()[-2000:]}")
                await asyncio.sleep(0.2)
            datasets = (await api.get(f"http://127.0.0.1:{data_port}/datasets")).json()["datasets"]
            dataset = next(d["id"] for d in datasets if d["name"] == "mnist")
            for project in (await api.get("/api/projects")).json():  # the demo project: out of the way
                await api.delete(f"/api/projects/{project['id']}", headers=ADMIN)
            header = (f"{'net':8} {'P':>8} {'N':>4} {'it/s':>6} {'ideal':>6} {'late p50':>9} {'late p99':>9} "
                      f"{'accepted':>9} {'of':>6} {'dropped':>8} {'missed':>7} {'master CPU%':>12} {'clients CPU%':>13}")
            print(header)
            for net in args.nets:
                for trainers in args.trainers:
                    row = await measure(api, ws_url, server.pid, dataset, net, trainers, args.seconds,
                                        "deflate" if args.deflate else None)
                    rows.append(row)
                    print(f"{net:8} {row['P']:>8,} {trainers:>4} {row['it_s']:>6.2f} {row['ideal_it_s']:>6.1f} "
                          f"{row['late_p50_ms']:>9.1f} {row['late_p99_ms']:>9.1f} {row['accepted']:>9} "
                          f"{row['expected']:>6} {row['dropped']:>8} {row['missed']:>7} {row['master_cpu_pct']:>12.0f} {row['clients_cpu_pct']:>13.0f}",
                          flush=True)
    finally:
        server.terminate()
        server.wait(30)
    load = os.getloadavg()[0]
    print(f"load average at end: {load:.2f}")
    summary = {f"{r['net']}_N{r['N']}": {"it_s": round(r["it_s"], 2), "late_p99_ms": round(r["late_p99_ms"], 1),
                                        "accepted_ratio": round(r["accepted"] / max(r["expected"], 1), 3),
                                        "master_cpu_pct": round(r["master_cpu_pct"]),
                                        "clients_cpu_pct": round(r["clients_cpu_pct"])} for r in rows}
    print(json.dumps({"master_load": summary, "T_ms": T_MS, "loadavg": round(load, 2),
                      "compression": "deflate" if args.deflate else None}))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="measurement window per configuration")
    parser.add_argument("--trainers", type=lambda s: [int(n) for n in s.split(",")], default=[1, 8, 32, 128])
    parser.add_argument("--deflate", action="store_true", help="clients offer permessage-deflate, as browsers do")
    parser.add_argument("--nets", type=lambda s: s.split(","), default=list(NETS), help="convnet, mlp or both")
    parser.add_argument("--masters", type=lambda s: [int(n) for n in s.split(",")], default=None,
                        help="run a tier of M masters per M listed (e.g. 1,2,3) instead of one plain master")
    arguments = parser.parse_args()
    if arguments.masters:
        from bench.master_tier import tier_main

        asyncio.run(tier_main(arguments))
    else:
        asyncio.run(main(arguments))
