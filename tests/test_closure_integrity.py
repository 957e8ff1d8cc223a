"""Closures against a real master: optimizer steps counted apart from iterations, the fingerprint check."""

from __future__ import annotations

import asyncio
import json

from mlitb.closure import load_closure
from mlitb.master.closure_verify import verify_with_server
from tests.master_support import ADMIN, trainer


async def test_an_iteration_without_results_takes_no_step_and_adams_t_equals_steps(system):
    project = await system.create_project(iteration_ms=300, optimizer={"name": "adam", "learning_rate": 0.001})
    pid = project["id"]
    async with trainer(system, pid) as client:
        for n in range(6):
            work = await client.expect("work")
            if n % 2 == 0:  # every other work is left unanswered: that iteration closes empty at its deadline
                await client.send(client.compute(work))
        await client.expect("work")
        await system.api.post(f"/api/projects/{pid}/pause", headers=ADMIN)
    closure = load_closure((await system.api.get(f"/api/projects/{pid}/closure")).text)
    stepped = [m for m in closure.metrics if m["train_loss"] is not None]
    assert len(stepped) == 3 and len(closure.metrics) == closure.training.iteration >= 6
    assert closure.training.steps == 3 == int(closure.optimizer.state["t"][0])
    assert (await asyncio.to_thread(verify_with_server, closure, system.data_url)).ok
    shown = (await system.api.get(f"/api/projects/{pid}")).json()
    assert shown["steps"] == 3 and shown["iteration"] == closure.training.iteration

    created = await system.api.post("/api/projects/from-closure", content=closure.dumps(), headers=ADMIN)
    assert created.status_code == 201, created.text
    assert created.json()["steps"] == 3 and created.json()["iteration"] == closure.training.iteration


async def test_from_closure_refuses_a_closure_of_other_data_unless_told_to_ignore_it(system):
    project = await system.create_project(status="paused")
    text = (await system.api.get(f"/api/projects/{project['id']}/closure")).text
    assert (await system.api.post("/api/projects/from-closure", content=text, headers=ADMIN)).status_code == 201

    obj = json.loads(text)
    obj["dataset"]["shards"][0] = "0" * 32  # one shard of other content
    other = json.dumps(obj)
    refused = await system.api.post("/api/projects/from-closure", content=other, headers=ADMIN)
    assert refused.status_code == 400
    body = refused.json()
    assert body["field"] == "dataset.shards"
    assert "lacks 1 of them and has 1 others" in body["error"] and "ignore_fingerprint=1" in body["error"]
    forced = await system.api.post("/api/projects/from-closure?ignore_fingerprint=1", content=other, headers=ADMIN)
    assert forced.status_code == 201, forced.text
    bad_flag = await system.api.post("/api/projects/from-closure?ignore_fingerprint=maybe", content=other,
                                     headers=ADMIN)
    assert bad_flag.status_code == 400 and bad_flag.json()["field"] == "ignore_fingerprint"
