"""A failing iteration: the loop is restarted with backoff, then the project paused with its error in the API;
non-finite parameters are never broadcast."""

from __future__ import annotations

import asyncio
import time

import numpy as np

from mlitb.protocol import result_frame
from tests.master_support import ADMIN, copy_store, running_system, trainer


async def test_a_divergent_update_is_refused_retried_then_pauses_the_project_with_its_error(mnist_dir, tmp_path):
    # Its results are made up (zero gradients), so spot checks are off (verify_queue=0: every check is dropped).
    async with running_system(copy_store(mnist_dir, tmp_path / "store"), loop_tries=3, loop_backoff_s=0.05,
                              verify_queue=0) as system:
        project = await system.create_project(optimizer={"name": "sgd", "learning_rate": 0.01, "l2_decay": 1.0})
        pid = project["id"]
        async with trainer(system, pid) as client:
            await client.send(client.compute(await client.expect("work")))
            await client.expect("work")
            response = await system.api.patch(f"/api/projects/{pid}", json={"optimizer": {"learning_rate": 10.0}},
                                              headers=ADMIN)
            assert response.status_code == 200, response.text
            # A valid result with a zero gradient every time: L2 decay alone at this rate multiplies the
            # parameters by about -8 per step, so within ~50 steps the next one would overflow float32.
            zero = np.zeros(project["param_count"], np.float32)
            works: list[int] = []
            async with asyncio.timeout(60):
                while "paused" not in client.idle:
                    message = await client.receive()
                    if message["type"] == "work":
                        works.append(message["iteration"])
                        await client.send(result_frame(message["iteration"], zero, 64, 64 * 2.3, 6, compute_ms=1.0))
            view = (await system.api.get(f"/api/projects/{pid}")).json()
            rt = system.runtime(pid)
            error = view["error"]
            assert view["status"] == "paused", view
            assert "non-finite" in error["message"] and "paused after 3 failures" in error["message"], error
            assert error["failures"] == 3 and error["iteration"] == view["iteration"] == works[-1]
            assert time.time() - 60 < error["time"] <= time.time()
            # The refused iteration was sent out three times (first try and two restarts), always with the same,
            # last good, parameters; nothing non-finite ever left the master or stayed in it.
            assert works[-3:] == [works[-1]] * 3 and works[-4] == works[-1] - 1
            assert all(np.isfinite(params).all() for params in client.params.values())
            assert np.array_equal(client.params[works[-1]], rt.params) and np.abs(rt.params).max() > 1e30
            assert np.isfinite(rt.optimizer.state["velocity"]).all()

            # With a sane learning rate, starting again clears the error and training goes on.
            await system.api.patch(f"/api/projects/{pid}", json={"optimizer": {"learning_rate": 0.001}}, headers=ADMIN)
            assert (await system.api.post(f"/api/projects/{pid}/start", headers=ADMIN)).json()["error"] is None
            work = await client.expect("work")
            await client.send(result_frame(work["iteration"], zero, 64, 64 * 2.3, 6, compute_ms=1.0))
            assert (await client.expect("work"))["iteration"] == work["iteration"] + 1


async def test_a_failing_evaluation_is_shown_and_training_goes_on(mnist_dir, tmp_path):
    store = copy_store(mnist_dir, tmp_path / "store")
    async with running_system(store) as system:
        manifest = (await system.api.get(f"{system.data_url}/datasets/{system.dataset['id']}")).json()
        test_shards = [ref["id"] for ref in manifest["splits"]["test"]["shards"]]
        saved = {f"shards/{shard}": await store.get(f"shards/{shard}") for shard in test_shards}
        await store.delete(*saved)
        project = await system.create_project(eval_every=1, iteration_ms=300)
        pid = project["id"]
        async with trainer(system, pid) as client:
            error = None
            async with asyncio.timeout(60):
                while error is None:
                    await client.send(client.compute(await client.expect("work")))
                    error = (await system.api.get(f"/api/projects/{pid}")).json()["error"]
            assert error["source"] == "evaluation", error
            assert "missing from the store" in error["message"] and test_shards[0] in error["message"], error
            first = error["iteration"]
            # Training goes on: later iterations are reduced and the same failure keeps being counted.
            async with asyncio.timeout(60):
                while error["failures"] < 3:
                    await client.send(client.compute(await client.expect("work")))
                    error = (await system.api.get(f"/api/projects/{pid}")).json()["error"]
            view = (await system.api.get(f"/api/projects/{pid}")).json()
            assert view["status"] == "running" and view["iteration"] > first + 2, view
            assert all(record["test_accuracy"] is None for record in (await system.api.get(f"/api/projects/{pid}/metrics")).json())
            # With the test shards back, the next evaluation succeeds and clears the error.
            await store.put_many(saved)
            async with asyncio.timeout(60):
                while view["error"] is not None:
                    await client.send(client.compute(await client.expect("work")))
                    view = (await system.api.get(f"/api/projects/{pid}")).json()
            records = (await system.api.get(f"/api/projects/{pid}/metrics")).json()
            assert any(record["test_accuracy"] is not None for record in records), records[-3:]
