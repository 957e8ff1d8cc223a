"""`mlitb conformance`: our Python worker passes; a worker with the wrong parameter layout fails, named."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import numpy as np
from websockets.exceptions import ConnectionClosed

from mlitb import conformance
from mlitb.protocol import decode, result_frame
from tests.e2e_system import ProcessSystem
from tests.helpers import REPO, TOKEN, poll_until
from tests.master_support import TINY_LAYERS, System, trainer


def test_our_python_worker_passes(process_system: ProcessSystem):
    project_id = process_system.create_project(iteration_ms=500)
    worker = process_system.start_worker(project_id)
    poll_until(lambda: process_system.worker_stats(project_id), timeout=60, what="the worker joins")
    done = subprocess.run(
        [sys.executable, "-m", "mlitb.cli", "conformance", "--master", process_system.url, "--project", project_id,
         "--results", "2", "--timeout", "120"],
        cwd=REPO, env={**os.environ, "MLITB_ADMIN_TOKEN": TOKEN}, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "PASS: 2 results" in done.stdout and done.stdout.count("  ok    worker") == 2, done.stdout
    assert worker.proc.poll() is None, "a passing worker keeps training"


async def test_a_worker_with_transposed_weights_fails_and_the_layer_is_named(system: System):
    """The softmax's fc weights sent as (inputs × outputs) instead of ConvNetJS's (outputs × inputs)."""
    project = await system.create_project(layers=TINY_LAYERS, iteration_ms=1000)
    async with trainer(system, project["id"]) as client:
        ask = asyncio.create_task(asyncio.to_thread(
            conformance.check, system.master_url, project["id"], TOKEN, client.welcome["client_id"], 1, 60))
        while not ask.done():
            try:
                work = await client.expect("work", timeout=1)
                honest = decode(client.compute(work), 1 << 30)
                grad = np.frombuffer(honest["grad"], "<f4").copy()
                weights = grad[:7840].reshape(10, 784)
                grad[:7840] = weights.T.reshape(-1)
                await client.send(result_frame(work["iteration"], grad, honest["count"], honest["loss_sum"],
                                               honest["correct"], 5.0, honest["batches"]))
            except TimeoutError:
                continue
            except ConnectionClosed:
                break  # the master excluded it once the recomputation disagreed
        body = await ask
    text = conformance.report(body)
    assert not body["passed"] and body["complete"], body
    assert "FAIL" in text and "layer 1 weights" in text, text
