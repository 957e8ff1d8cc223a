"""The evaluation process: test metrics come from a separate process that is restarted if it dies
and stopped with the master."""

from __future__ import annotations

import os
import signal

from tests.master_support import copy_store, running_system, trainer


async def _train_one_iteration(client) -> None:
    await client.send(client.compute(await client.expect("work")))
    await client.expect("work")


async def test_evaluation_goes_on_after_its_process_is_killed_and_stops_with_the_master(mnist_dir, tmp_path):
    async with running_system(copy_store(mnist_dir, tmp_path / "store")) as system:
        project = await system.create_project(eval_every=1)
        registry = system.app.state.registry
        rt = system.runtime(project["id"])
        async with trainer(system, project["id"]) as client:
            await _train_one_iteration(client)
            await registry.settle(rt)
            first = await registry.evaluator.pid()
            assert first != os.getpid()
            os.kill(first, signal.SIGKILL)
            await _train_one_iteration(client)
            await registry.settle(rt)
            second = await registry.evaluator.pid()
        records = (await system.api.get(f"/api/projects/{project['id']}/metrics")).json()
    assert second != first
    assert [r["test_accuracy"] is not None for r in records[:2]] == [True, True]
    assert 0 < records[1]["test_accuracy"] <= 1
    # Stopping the master stopped (and reaped) the evaluation process: no orphan is left behind.
    for pid in (first, second):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        raise AssertionError(f"process {pid} outlived the master")
