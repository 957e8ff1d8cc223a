"""`bench/master_load.py --masters 1,2,3`: the same scripted trainers over a tier of masters.

Per M in `--masters`: a private redis-server on a free loopback port (no persistence, killed and its
directory removed at the end), MNIST in small shards written into it, and M `mlitb serve --redis`
masters on their own ports, each with its own public URL (cluster mode, docs/deploy.md) and spot checks
off (the trainers send made-up gradients). Per configuration (net x total trainers N): M projects, one
owned by each master, and N trainers spread evenly over them, all in one measurement window.

Ownership: the master a project is created on holds its lease at once (cluster.claim_new); a project is
kept only if rendezvous hashing over the live masters also names that master (else it is deleted and
created again), so the tier never hands it over during the window. The trainers connect to the owner
that `GET /api/projects/{id}` names, and follow `moved` if it changes anyway.

"Trainers held": per master, the largest trainer count it ran whose results were >= 95 % accepted; for
the tier, the largest total N at which every master was >= 95 % accepted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.load_clients import (
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
    ws_url_of,
)
from mlitb.master.lease import rendezvous_winner
from mlitb.store import RedisStore
from tests.redis_process import redis_process

HELD_RATIO = 0.95
METRICS = ("mlitb_iterations_total", "mlitb_results_accepted_total", "mlitb_results_dropped_total",
           "mlitb_results_missed_total", "mlitb_iteration")


# ------------------------------------------------------------ pure logic


def spread(total: int, parts: int) -> list[int]:
    """`total` trainers over `parts` projects as evenly as they go: 8 over 3 is [3, 3, 2]."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def held(rows: list[dict], key: str = "n") -> int:
    """The largest trainer count (`key`) among `rows` whose results were >= 95 % accepted; 0 if none."""
    return max((r[key] for r in rows if r["expected"] and r["accepted"] / r["expected"] >= HELD_RATIO), default=0)


def tier_held(configs: dict[int, list[dict]]) -> int:
    """The largest total N at which every master given trainers had >= 95 % of their results accepted; 0 if none
    (a master left without trainers, 2 over 3 masters, neither holds nor fails the tier)."""
    return max((n for n, rows in configs.items() if any(r["n"] for r in rows) and
                all(r["expected"] and r["accepted"] / r["expected"] >= HELD_RATIO for r in rows if r["n"])), default=0)


# ------------------------------------------------------------ processes


@dataclass
class Master:
    index: int
    port: int = field(default_factory=free_port)
    data_port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None
    log: BinaryIO | None = None

    @property
    def id(self) -> str:
        return f"m{self.index}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def start_masters(count: int, redis_url: str, tmp: Path) -> list[Master]:
    masters = [Master(i) for i in range(count)]
    urls = ",".join(m.url for m in masters)
    for m in masters:
        env = {**os.environ, "MLITB_ADMIN_TOKEN": TOKEN, "MLITB_VERIFY_QUEUE": "0", "MLITB_PUBLIC_URL": m.url,
               "MLITB_MASTER_ID": m.id, "MLITB_MASTER_URLS": urls}
        m.log = (tmp / f"master-{m.index}.log").open("wb")  # closed by stop_masters
        m.proc = subprocess.Popen([sys.executable, "-m", "mlitb.cli", "serve", "--port", str(m.port), "--data-port",
                                   str(m.data_port), "--data-dir", str(tmp / f"data-{m.index}"), "--redis", redis_url],
                                  env=env, stdout=subprocess.DEVNULL, stderr=m.log)
    return masters


def stop_masters(masters: list[Master]) -> None:
    for m in masters:
        if m.proc is not None and m.proc.poll() is None:
            m.proc.send_signal(signal.SIGTERM)
    for m in masters:
        if m.proc is not None:
            try:
                m.proc.wait(30)
            except subprocess.TimeoutExpired:
                m.proc.kill()
                m.proc.wait(10)
        if m.log is not None:
            m.log.close()


async def poll(check, *, timeout: float, what: str, interval: float = 0.2):
    """Call the coroutine `check` until it returns something truthy (or raise, naming `what`)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = await check()
        except httpx.TransportError:
            value = None
        if value:
            return value
        await asyncio.sleep(interval)
    raise RuntimeError(f"timed out after {timeout} s waiting for {what}")


async def wait_tier(api: httpx.AsyncClient, masters: list[Master], tmp: Path) -> None:
    async def all_live() -> bool:
        for m in masters:
            if m.proc.poll() is not None:
                raise RuntimeError(f"master {m.id} exited: {(tmp / f'master-{m.index}.log').read_text()[-2000:]}")
        answers = [(await api.get(m.url + "/api/masters")) for m in masters]
        return all(a.status_code == 200 and len(a.json()) == len(masters) for a in answers)

    await poll(all_live, timeout=120, what=f"all {len(masters)} masters up and seeing each other")


async def owner_of(api: httpx.AsyncClient, masters: list[Master], project: str) -> Master:
    async def ask() -> Master | None:
        response = await api.get(f"{masters[0].url}/api/projects/{project}", follow_redirects=True)
        owner = response.json().get("owner") if response.status_code == 200 else None
        return next((m for m in masters if owner and m.url == owner["url"]), None)

    return await poll(ask, timeout=30, what=f"an owner of project {project}")


async def delete_all_projects(api: httpx.AsyncClient, masters: list[Master]) -> None:
    """The demo project(s) out of the way, deleted on their owner (a redirect would drop the token)."""
    for project in (await api.get(masters[0].url + "/api/projects")).json():
        owner = await owner_of(api, masters, project["id"])
        (await api.delete(f"{owner.url}/api/projects/{project['id']}", headers=ADMIN)).raise_for_status()


async def create_owned(api: httpx.AsyncClient, masters: list[Master], master: Master, body: dict) -> str:
    """A project `master` owns and rendezvous hashing keeps there (so no hand-over in the window)."""
    live = [m.id for m in masters]
    for _ in range(20 * len(masters)):
        response = await api.post(master.url + "/api/projects", json=body, headers=ADMIN)
        response.raise_for_status()
        project = response.json()["id"]
        if rendezvous_winner(project, live) == master.id and (await owner_of(api, masters, project)) is master:
            return project
        (await api.delete(f"{master.url}/api/projects/{project}", headers=ADMIN)).raise_for_status()
    raise RuntimeError(f"no project that rendezvous hashing gives to {master.id} after {20 * len(masters)} tries")


# ------------------------------------------------------------ one configuration


async def measure_tier(api: httpx.AsyncClient, masters: list[Master], dataset: str, net: str, total: int,
                       seconds: float, compression: str | None) -> list[dict]:
    layers, param_count = NETS[net]
    counts = spread(total, len(masters))
    projects = []
    for m, n in zip(masters, counts):
        body = {"name": f"tier-{net}-{total}-{m.id}", "dataset": dataset, "layers": layers, "iteration_ms": T_MS,
                "optimizer": {"name": "sgd", "learning_rate": 1e-6}, "status": "running", "eval_every": 1_000_000}
        projects.append(await create_owned(api, masters, m, body))
    frames = Frames(param_count)
    events = [asyncio.Event() for _ in range(total)]
    tasks, k = [], 0
    for m, project, n in zip(masters, projects, counts):
        for _ in range(n):
            tasks.append(asyncio.create_task(trainer(ws_url_of(m.url), project, frames, events[k], None, compression)))
            k += 1
    try:
        async with asyncio.timeout(60):
            await asyncio.gather(*(event.wait() for event in events))  # every trainer is training
        before = [await metrics_on(api, m, p) for m, p in zip(masters, projects)]
        cpu_before, start, own_before = [cpu_seconds(m.proc.pid) for m in masters], time.perf_counter(), own_cpu()
        await asyncio.sleep(seconds)  # the measurement window (not synchronisation)
        cpu_after, wall, own_after = [cpu_seconds(m.proc.pid) for m in masters], time.perf_counter() - start, own_cpu()
        after = [await metrics_on(api, m, p) for m, p in zip(masters, projects)]
    finally:
        await stop_clients(tasks)
    rows = []
    for i, (m, project, n) in enumerate(zip(masters, projects, counts)):
        records = (await api.get(f"{m.url}/api/projects/{project}/metrics", params={"since": int(before[i][4])})).json()
        late = [r["iteration_ms"] - T_MS for r in records if r["iteration"] < after[i][4]]
        iterations, accepted, dropped, missed = (after[i][j] - before[i][j] for j in range(4))
        rows.append({"net": net, "N": total, "master": m.id, "n": n, "it_s": iterations / wall, "late": late,
                     "accepted": int(accepted), "expected": int(iterations * n), "dropped": int(dropped),
                     "missed": int(missed), "master_cpu_pct": 100 * (cpu_after[i] - cpu_before[i]) / wall,
                     "clients_cpu_pct": 100 * (own_after - own_before) / wall})  # all trainers: one process
        (await api.delete(f"{m.url}/api/projects/{project}", headers=ADMIN)).raise_for_status()
    return rows


async def metrics_on(api: httpx.AsyncClient, master: Master, project: str) -> list[float]:
    """METRICS for `project` from one scrape of the owner's /metrics: iterations and accepted results are
    counted together at each close, so one scrape never splits an iteration between them."""
    totals = dict.fromkeys(METRICS, 0.0)
    for line in (await api.get(master.url + "/metrics")).text.splitlines():
        name = line.split("{", 1)[0]
        if name in totals and f'project="{project}"' in line:
            totals[name] += float(line.split()[-1])
    return [totals[name] for name in METRICS]


def tier_row(rows: list[dict]) -> dict:
    late = [x for r in rows for x in r["late"]]
    return {"net": rows[0]["net"], "N": rows[0]["N"], "master": "tier", "n": sum(r["n"] for r in rows),
            "it_s": float(np.mean([r["it_s"] for r in rows if r["n"]] or [0.0])), "late": late,
            "clients_cpu_pct": rows[0]["clients_cpu_pct"],
            **{k: sum(r[k] for r in rows) for k in ("accepted", "expected", "dropped", "missed", "master_cpu_pct")}}


def print_row(m_count: int, r: dict) -> None:
    p50 = f"{np.percentile(r['late'], 50):>9.1f}" if r["late"] else f"{'-':>9}"
    p99 = f"{np.percentile(r['late'], 99):>9.1f}" if r["late"] else f"{'-':>9}"
    ratio = r["accepted"] / max(r["expected"], 1)
    print(f"{m_count:>2} {r['net']:8} {r['N']:>4} {r['master']:>6} {r['n']:>4} {r['it_s']:>6.2f} {p50} {p99} "
          f"{r['accepted']:>9} {r['expected']:>6} {ratio:>6.3f} {r['dropped']:>8} {r['missed']:>7} "
          f"{r['master_cpu_pct']:>12.0f} {r['clients_cpu_pct']:>13.0f}", flush=True)


# ------------------------------------------------------------ the run


async def run_tier(args: argparse.Namespace, m_count: int) -> dict[str, dict[int, list[dict]]]:
    """Every configuration on a fresh tier of `m_count` masters: {net: {N: per-master rows}}."""
    compression = "deflate" if args.deflate else None
    results: dict[str, dict[int, list[dict]]] = {}
    tmp = Path(tempfile.mkdtemp(prefix="mlitb-tier-"))
    masters: list[Master] = []
    try:
        with redis_process(persist=False) as server:
            store = RedisStore(server.url)
            await ingest_small_shards("", store)  # the masters then find MNIST there and ingest nothing
            masters = start_masters(m_count, server.url, tmp)
            async with httpx.AsyncClient(timeout=60) as api:
                await wait_tier(api, masters, tmp)
                datasets = (await api.get(f"http://127.0.0.1:{masters[0].data_port}/datasets")).json()["datasets"]
                dataset = next(d["id"] for d in datasets if d["name"] == "mnist")
                await delete_all_projects(api, masters)
                for net in args.nets:
                    for total in args.trainers:
                        rows = await measure_tier(api, masters, dataset, net, total, args.seconds, compression)
                        results.setdefault(net, {})[total] = rows
                        for r in rows + ([tier_row(rows)] if m_count > 1 else []):
                            print_row(m_count, r)
            stop_masters(masters)
    finally:
        stop_masters(masters)
        shutil.rmtree(tmp, ignore_errors=True)
    return results


async def tier_main(args: argparse.Namespace) -> None:
    print(f"load average at start: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; T = {T_MS} ms, "
          f"window {args.seconds} s, client compression: {'deflate' if args.deflate else 'none'}; "
          f"tiers of {','.join(map(str, args.masters))} masters on one private redis-server each", flush=True)
    print(f"{'M':>2} {'net':8} {'N':>4} {'master':>6} {'n':>4} {'it/s':>6} {'late p50':>9} {'late p99':>9} "
          f"{'accepted':>9} {'of':>6} {'ratio':>6} {'dropped':>8} {'missed':>7} {'master CPU%':>12} {'clients CPU%':>13}")
    summary: dict[str, dict] = {}
    for m_count in args.masters:
        for net, configs in (await run_tier(args, m_count)).items():
            per_master = {mid: held([rows[i] for rows in configs.values()]) for i, mid in
                          enumerate(r["master"] for r in next(iter(configs.values())))}
            summary[f"{net}_M{m_count}"] = {
                "trainers_held_per_master": per_master, "trainers_held_tier": tier_held(configs),
                "configs": {f"N{n}": {"accepted_ratio": round(t["accepted"] / max(t["expected"], 1), 3),
                                      "late_p99_ms": round(float(np.percentile(t["late"], 99)), 1) if t["late"] else None,
                                      "master_cpu_pct": [round(r["master_cpu_pct"]) for r in rows],
                                      "clients_cpu_pct": round(t["clients_cpu_pct"]),
                                      "accepted_ratio_per_master": [round(r["accepted"] / max(r["expected"], 1), 3)
                                                                    for r in rows]}
                            for n, rows in configs.items() for t in [tier_row(rows)]}}
    load = os.getloadavg()[0]
    print(f"load average at end: {load:.2f}")
    print(f"{'M':>2} {'net':8} {'held per master':>24} {'held by the tier':>17}")
    for key, s in summary.items():
        net, m = key.rsplit("_M", 1)
        print(f"{m:>2} {net:8} {json.dumps(s['trainers_held_per_master']):>24} {s['trainers_held_tier']:>17}")
    print(json.dumps({"master_tier": summary, "T_ms": T_MS, "trainers": args.trainers, "seconds": args.seconds,
                      "loadavg": round(load, 2), "compression": "deflate" if args.deflate else None}))
