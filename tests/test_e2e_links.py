"""Slow links end to end: compressed and local-step workers train MNIST through real sockets.

Real processes on loopback (`mlitb serve`, `mlitb worker`s) and, for the slow
link, tests/throttle_proxy.py between the workers and the master (in a thread
of this process, its own event loop). The test observes the system through
the HTTP API and the proxy's byte counts, as a researcher would.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator

from mlitb.model.zoo import MNIST_SOFTMAX
from tests.e2e_system import ProcessSystem
from tests.helpers import poll_until
from tests.throttle_proxy import ThrottleProxy

PARAMS = 7850  # MNIST_SOFTMAX
TARGET = 0.85
MAX_ITERATIONS = 150


@contextlib.contextmanager
def proxy_thread(target_port: int, rate: float, delay: float) -> Iterator[ThrottleProxy]:
    """A throttling proxy to `target_port`, running in a thread with its own event loop."""
    loop = asyncio.new_event_loop()
    proxy = ThrottleProxy(target_port, rate, delay)
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(proxy.start(), loop).result(10)
    try:
        yield proxy
    finally:
        asyncio.run_coroutine_threadsafe(proxy.stop(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def _reach(system: ProcessSystem, project_id: str, target: float) -> tuple[int, float]:
    def reached() -> tuple[int, float] | None:
        project = system.project(project_id)
        latest = project["metrics"] or {}
        accuracy = latest.get("test_accuracy")
        if accuracy is not None and accuracy >= target:
            return latest["test_iteration"], accuracy
        assert project["iteration"] <= MAX_ITERATIONS, f"iteration {project['iteration']}: test accuracy {accuracy}"
        return None

    return poll_until(reached, timeout=600, interval=0.5, what=f"{target:.0%} test accuracy")


def test_a_mixed_project_float32_int8_and_topk_clients_trains(process_system: ProcessSystem):
    project_id = process_system.create_project(
        layers=MNIST_SOFTMAX, iteration_ms=400, eval_every=5, optimizer={"name": "adagrad", "learning_rate": 0.05},
        links={"result_codecs": ["topk", "i8", "f32"], "param_codecs": ["delta-i8", "f32"], "topk_ratio": 0.05},
    )
    workers = {codec: process_system.start_worker(project_id, "--result-codecs", codec)
               for codec in ("f32", "i8", "topk")}
    iteration, accuracy = _reach(process_system, project_id, TARGET)

    def all_contributed() -> dict | None:
        stats = process_system.worker_stats(project_id)
        return stats if all(stats[w.id]["accepted"] > 0 for w in workers.values()) else None

    stats = poll_until(all_contributed, timeout=120, what="every worker has a result applied")
    for codec, worker in workers.items():
        assert stats[worker.id]["codecs"]["result"] == codec, stats[worker.id]
        assert stats[worker.id]["codecs"]["params"] == "delta-i8"
        assert stats[worker.id]["accepted"] > 0, stats
    print(f"\nmixed project: {accuracy:.4f} at iteration {iteration}")


def test_compressed_local_step_workers_train_through_a_throttled_link(process_system: ProcessSystem):
    project_id = process_system.create_project(
        layers=MNIST_SOFTMAX, iteration_ms=700, eval_every=5,
        optimizer={"name": "nesterov", "learning_rate": 0.7, "momentum": 0.9},
        links={"result_codecs": ["topk", "i8"], "param_codecs": ["delta-i8"], "topk_ratio": 0.05,
               "local_steps": 4, "local_learning_rate": 0.5},
    )
    with proxy_thread(process_system.port, rate=100_000, delay=0.15) as proxy:
        url = f"http://127.0.0.1:{proxy.port}"
        workers = [process_system.start_worker(project_id, "--master", url, "--result-codecs", codec)
                   for codec in ("topk", "i8")]
        iteration, accuracy = _reach(process_system, project_id, TARGET)
        # Steady-state bytes: over the next 10 iterations (joining costs, welcome and shard lists, excluded).
        up0, down0, it0 = proxy.traffic.up, proxy.traffic.down, process_system.project(project_id)["iteration"]
        poll_until(lambda: process_system.project(project_id)["iteration"] >= it0 + 10, timeout=120,
                   what="10 more iterations")
        up, down = proxy.traffic.up - up0, proxy.traffic.down - down0
        iterations = process_system.project(project_id)["iteration"] - it0
        stats = process_system.worker_stats(project_id)  # while the workers are still connected
    assert {stats[w.id]["codecs"]["result"] for w in workers} == {"topk", "i8"}
    assert all(stats[w.id]["accepted"] > 0 for w in workers), stats
    # float32 would be 4 × 7,850 bytes per worker per iteration each way
    assert up / (2 * iterations) < 4 * PARAMS / 3, (up, iterations)
    assert down / (2 * iterations) < 4 * PARAMS / 2, (down, iterations)
    print(f"\nthrottled link: {accuracy:.4f} at iteration {iteration}; per worker per iteration "
          f"{up / (2 * iterations):,.0f} B up, {down / (2 * iterations):,.0f} B down")
