"""Target: Redis goes away mid-training: the loop keeps iterating, and the state lands once Redis is back.

Real processes: a redis-server (append-only, so a restart keeps its data),
`mlitb serve --redis` on it and one `mlitb worker`. The test kills Redis,
watches the project iterate on through the HTTP API while `/healthz` reports
the outage, starts Redis again on the same port and polls Redis itself until
a checkpoint from after the outage is there. The master must log the outage
once and the recovery once, not every retry, and no traceback.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from tests.e2e_system import started
from tests.helpers import poll_until
from tests.redis_process import redis_process
from tests.stored_system import TINY_LAYERS, StoredSystem

N = 2
ITERATIONS_WITHOUT_REDIS = 10


def test_training_survives_a_redis_outage_and_the_checkpoint_lands_after_it(tmp_path: Path):
    with redis_process() as redis, started(StoredSystem(tmp_path, redis_url=redis.url, checkpoint_every=N)) as system:
        project_id = system.create_project(layers=TINY_LAYERS, iteration_ms=200, eval_every=N,
                                           optimizer={"name": "adam", "learning_rate": 0.002})
        system.start_worker(project_id)
        poll_until(lambda: (system.stored_checkpoint(project_id) or None)
                   and system.stored_checkpoint(project_id).iteration >= 2 * N, timeout=60,
                   what="checkpoints land while Redis is up")

        redis.stop()
        down_at = system.project(project_id)["iteration"]
        health = httpx.get(f"{system.url}/healthz", timeout=10)
        assert health.status_code == 503 and redis.url in health.json()["error"]
        reached = poll_until(lambda: (i := system.project(project_id)["iteration"]) >= down_at + ITERATIONS_WITHOUT_REDIS
                             and i, timeout=60, what="the loop iterates on without Redis")

        redis.start()
        back = time.monotonic()
        landed = poll_until(lambda: (c := system.stored_checkpoint(project_id)) and c.iteration >= reached and c,
                            timeout=30, what="a checkpoint from after the outage lands in Redis")
        print(f"\nRedis down at iteration {down_at}; iterated to {reached} without it; "
              f"checkpoint of iteration {landed.iteration} in Redis {time.monotonic() - back:.2f} s after it came back")
        assert [m["iteration"] for m in landed.metrics] == list(range(landed.iteration))
        assert httpx.get(f"{system.url}/healthz", timeout=10).status_code == 200
        log = system.log(1)
        assert log.count("retrying with backoff") == 1, log
        assert log.count("the store is back") == 1, log
        assert "Traceback" not in log, log
