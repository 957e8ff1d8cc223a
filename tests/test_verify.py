"""`mlitb verify` against a real master and data server: closures reproduce, tampered ones say what differs."""

from __future__ import annotations

import asyncio
import base64
import json
import sys
from pathlib import Path

import httpx
import numpy as np

from mlitb.closure import load_closure
from mlitb.master.closure_verify import verify_closure, verify_with_server
from tests.helpers import REPO
from tests.master_support import ADMIN, trainer


async def trained_closure(system, iterations: int = 3, **overrides) -> str:
    """The closure text of a project trained `iterations` iterations by a scripted trainer, then paused."""
    project = await system.create_project(eval_every=1000, **overrides)  # no evaluation but the download's
    async with trainer(system, project["id"]) as client:
        for _ in range(iterations):
            await client.send(client.compute(await client.expect("work")))
        await client.expect("work")
        await system.api.post(f"/api/projects/{project['id']}/pause", headers=ADMIN)
    return (await system.api.get(f"/api/projects/{project['id']}/closure")).text


async def mlitb_verify(path: Path, data_url: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mlitb.cli", "verify", str(path), "--data-url", data_url, cwd=REPO,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(process.communicate(), 120)
    return process.returncode, out.decode()


async def test_a_downloaded_closure_verifies_and_tampered_ones_say_what_differs(system, tmp_path: Path):
    text = await trained_closure(system)
    closure = load_closure(text)
    last = closure.metrics[-1]
    assert last["iteration"] == closure.training.iteration - 1 and last["test_accuracy"] is not None
    assert closure.dataset.test and set(closure.dataset.test) < set(closure.dataset.shards)

    good = tmp_path / "good.json"
    good.write_text(text)
    code, out = await mlitb_verify(good, system.data_url)
    assert code == 0, out
    assert "REPRODUCED" in out and f"{len(closure.dataset.shards)} match" in out

    obj = json.loads(text)
    params = np.frombuffer(base64.b64decode(obj["model"]["params"]), "<f4").copy()
    params[-10] += 0.5  # the bias of class 0
    obj["model"]["params"] = base64.b64encode(params.tobytes()).decode()
    tampered = tmp_path / "param.json"
    tampered.write_text(json.dumps(obj))
    code, out = await mlitb_verify(tampered, system.data_url)
    assert code == 1 and "DIFFERS: test loss: recorded" in out and "NOT REPRODUCED" in out, out

    obj = json.loads(text)
    wrong = "f" * 32
    victim = obj["dataset"]["test"][0]
    obj["dataset"]["shards"] = [wrong if s == victim else s for s in obj["dataset"]["shards"]]
    obj["dataset"]["test"][0] = wrong
    tampered = tmp_path / "shard.json"
    tampered.write_text(json.dumps(obj))
    code, out = await mlitb_verify(tampered, system.data_url)
    assert code == 1 and f"DIFFERS: shard {wrong}: the data server at {system.data_url} answered 404" in out, out

    code, out = await mlitb_verify(tmp_path / "missing.json", system.data_url)
    assert code == 2 and "cannot read" in out


async def test_a_shard_with_other_content_is_named(system):
    closure = load_closure(await trained_closure(system, iterations=1))
    async with httpx.AsyncClient(timeout=30) as http:
        url = f"{system.data_url}/datasets/{closure.dataset.id}/shards/"
        other = (await http.get(url + closure.dataset.shards[0])).content
        blobs = {s: (await http.get(url + s)).content for s in closure.dataset.shards}
    victim = closure.dataset.test[0]
    blobs[victim] = other  # served under the victim's id: a server that lies about the content
    report = verify_closure(closure, blobs.__getitem__)
    assert not report.ok
    assert report.problems == [(f"shard {victim}: its content hashes to {closure.dataset.shards[0]}, so it holds "
                                "other examples than the closure was trained and tested on")]


async def test_the_dashboards_verify_action_runs_it_on_the_master(system):
    project = await system.create_project(iteration_ms=300)
    async with trainer(system, project["id"]) as client:
        for _ in range(2):
            await client.send(client.compute(await client.expect("work")))
        await client.expect("work")
        response = await system.api.post(f"/api/projects/{project['id']}/verify", headers=ADMIN)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["ok"] is True and body["problems"] == [] and body["text"].endswith("REPRODUCED")
    assert (await system.api.post(f"/api/projects/{project['id']}/verify")).status_code == 401
    # the project kept running meanwhile: a later closure verifies too (figures of its own parameters)
    closure = load_closure((await system.api.get(f"/api/projects/{project['id']}/closure")).text)
    assert (await asyncio.to_thread(verify_with_server, closure, system.data_url)).ok
