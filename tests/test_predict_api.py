"""POST /api/projects/{id}/predict on a real master (uvicorn) with real workers over real sockets.

The answers are compared with `mlitb predict`'s arithmetic on the closure of the
same iteration (mlitb.predict.classify): same classes, probabilities within 1e-5,
in input order, however the chunks travelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import pytest
from PIL import Image
from websockets.asyncio.client import connect

from mlitb.closure import load_closure
from mlitb.model import Net
from mlitb.predict import classify, image_pixels
from mlitb.protocol import encode, prediction_frame
from tests.helpers import ADMIN, REPO, TOKEN
from tests.master_support import copy_store, running_system

TOLERANCE = 1e-5


def pixels(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, 28, 28, 1), dtype=np.uint8)


def msgpack_body(batch: np.ndarray) -> bytes:
    return msgpack.packb({"shape": list(batch.shape), "pixels": batch.tobytes()}, use_bin_type=True)


async def post(system, project: str, batch: np.ndarray, headers: dict[str, str] | None = None):
    return await system.api.post(f"/api/projects/{project}/predict", content=msgpack_body(batch),
                                 headers={"Content-Type": "application/msgpack", **(headers or {})})


async def closure_probabilities(system, project: str, batch: np.ndarray) -> tuple[np.ndarray, int]:
    closure = load_closure((await system.api.get(f"/api/projects/{project}/closure")).text)
    return classify(closure, batch), closure.training.iteration


def assert_same(answer: dict[str, Any], expected: np.ndarray, iteration: int) -> None:
    got = np.array([p["probabilities"] for p in answer["predictions"]])
    assert answer["parameters_iteration"] == iteration
    assert got.shape == expected.shape
    assert [p["label"] for p in answer["predictions"]] == list(expected.argmax(axis=1))
    assert np.abs(got - expected).max() <= TOLERANCE
    assert sum(c["count"] for c in answer["chunks"]) == expected.shape[0]


class Predictor:
    """A scripted `predictor` connection: computes real answers with the numpy engine, or lies, as told."""

    def __init__(self, ws) -> None:
        self.ws = ws
        self.welcome: dict[str, Any] = {}
        self.params: tuple[int, np.ndarray] | None = None
        self.errors: list[str] = []
        self.skipped: list[dict[str, Any]] = []  # predict frames passed over while expecting something else

    async def hello(self, project: str) -> None:
        await self.ws.send(encode({"type": "hello", "protocol": 1, "role": "predictor", "project": project,
                                   "client": {"kind": "python", "engine": "numpy", "cores": 1, "agent": "test"}}))
        self.welcome = await self.expect("welcome")
        self.net = Net(self.welcome["project"]["layers"])

    async def expect(self, kind: str, timeout: float = 15.0) -> dict[str, Any]:
        if kind == "predict" and self.skipped:
            return self.skipped.pop(0)
        async with asyncio.timeout(timeout):
            while True:
                message = msgpack.unpackb(await self.ws.recv(), raw=False)
                if message["type"] == "error":
                    self.errors.append(message["code"])
                if message["type"] == "predict" and "params" in message:
                    self.params = (message["iteration"], np.frombuffer(message["params"], "<f4"))
                if message["type"] == kind:
                    return message
                if message["type"] == "predict":
                    self.skipped.append(message)

    def answer(self, chunk: dict[str, Any]) -> np.ndarray:
        assert self.params is not None and self.params[0] == chunk["iteration"]
        batch = np.frombuffer(chunk["pixels"], np.uint8).reshape(chunk["count"], 28, 28, 1)
        norm = self.welcome["project"]["normalization"]
        x = batch.astype(np.float32) * np.float32(norm["scale"]) + np.float32(norm["offset"])
        return self.net.predict(self.params[1], x)


@contextlib.asynccontextmanager
async def predictor(system, project: str):
    async with connect(system.ws_url, max_size=None) as ws:
        client = Predictor(ws)
        await client.hello(project)
        yield client


async def wait_predictors(system, project: str, count: int) -> None:
    async with asyncio.timeout(60):
        while (await system.api.get(f"/api/projects/{project}")).json()["predictors"] != count:
            await asyncio.sleep(0.05)


async def start_worker(system, project: str, tmp_path: Path, *extra: str) -> asyncio.subprocess.Process:
    """A real `mlitb worker` process (its output in tmp_path/worker.log)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    with (tmp_path / "worker.log").open("wb") as log:  # the child keeps its own descriptor
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "mlitb.cli", "worker", "--master", system.master_url, "--project", project,
            "--cache-dir", str(tmp_path / "cache"), *extra, cwd=REPO, env=env, stdout=log, stderr=log)


@pytest.fixture
async def tuned_system(mnist_dir: Path, tmp_path: Path):
    """Small limits, so each one can be reached with a few requests."""
    async with running_system(copy_store(mnist_dir, tmp_path / "store"), predict_max_images=300,
                              predict_max_body_bytes=300 * 784 + 1000, predict_rate_per_minute=1,
                              predict_rate_burst=3) as running:
        yield running


# ------------------------------------------------------------ no worker: the fallback process


async def test_without_workers_the_fallback_process_predicts_in_input_order(system):
    project = (await system.create_project(status="paused"))["id"]
    batch = pixels(1500)
    response = await post(system, project, batch)
    assert response.status_code == 200, response.text
    answer = response.json()
    expected, iteration = await closure_probabilities(system, project, batch)
    assert_same(answer, expected, iteration)
    assert {c["worker"] for c in answer["chunks"]} == {"master"} and len(answer["chunks"]) == 2
    assert answer["predictions"][0]["class"] == system.dataset["classes"][answer["predictions"][0]["label"]]


async def test_image_files_are_resized_like_the_training_data(system, tmp_path: Path):
    project = (await system.create_project(status="paused"))["id"]
    paths = []
    for i, (size, mode) in enumerate([((28, 28), "L"), ((40, 33), "RGB"), ((10, 12), "L")]):
        path = tmp_path / f"image-{i}.png"
        array = np.random.default_rng(i).integers(0, 256, (size[1], size[0], 3 if mode == "RGB" else 1), np.uint8)
        Image.fromarray(array.squeeze(), mode).save(path)
        paths.append(path)
    files = [("files", (p.name, p.read_bytes(), "image/png")) for p in paths]
    response = await system.api.post(f"/api/projects/{project}/predict", files=files)
    assert response.status_code == 200, response.text
    batch = np.stack([image_pixels(str(p), (28, 28, 1)) for p in paths])
    expected, iteration = await closure_probabilities(system, project, batch)
    assert_same(response.json(), expected, iteration)


# ------------------------------------------------------------ workers


async def test_answers_in_shuffled_order_from_two_workers_are_reassembled_by_key(system):
    project = (await system.create_project(status="paused"))["id"]
    batch = pixels(700, seed=3)
    sent_orders: list[list[str]] = []

    async def serve(client: Predictor) -> None:
        """Take up to two chunks, answer them last first, until the request is done."""
        while True:
            try:
                chunks = [await client.expect("predict", timeout=30)]
                with contextlib.suppress(TimeoutError):
                    chunks.append(await client.expect("predict", timeout=0.5))
            except TimeoutError:
                return
            chunks.reverse()
            sent_orders.append([c["key"] for c in chunks])
            for chunk in chunks:  # compute_ms as if 64 images took 150 ms: chunks stay small (~21), many of them
                await client.ws.send(prediction_frame(chunk["key"], client.answer(chunk), 150.0))

    async with predictor(system, project) as a, predictor(system, project) as b:
        await wait_predictors(system, project, 2)
        servers = [asyncio.create_task(serve(a)), asyncio.create_task(serve(b))]
        response = await post(system, project, batch)
        for task in servers:
            task.cancel()
        await asyncio.gather(*servers, return_exceptions=True)
    assert response.status_code == 200, response.text
    answer = response.json()
    expected, iteration = await closure_probabilities(system, project, batch)
    assert_same(answer, expected, iteration)
    workers = {c["worker"] for c in answer["chunks"]}
    assert workers == {a.welcome["client_id"], b.welcome["client_id"]}
    assert any(len(keys) == 2 for keys in sent_orders)  # some chunks really came back out of order
    assert len(answer["chunks"]) >= 8
    assert system.runtime(project).predictions.counters.checks_passed >= 10  # each worker's first five


async def test_a_chunk_whose_worker_dies_mid_batch_goes_to_a_real_worker(system, tmp_path: Path):
    project = (await system.create_project(status="paused"))["id"]
    worker = await start_worker(system, project, tmp_path, "--predict-only")
    try:
        await wait_predictors(system, project, 1)
        batch = pixels(2000, seed=5)
        async with predictor(system, project) as doomed:
            await wait_predictors(system, project, 2)
            request = asyncio.create_task(post(system, project, batch))
            chunk = await doomed.expect("predict")
            doomed_id = doomed.welcome["client_id"]
        response = await request  # the dying worker's chunks were sent again, to the real one
        assert response.status_code == 200, response.text
        answer = response.json()
        expected, iteration = await closure_probabilities(system, project, batch)
        assert_same(answer, expected, iteration)
        workers = {c["worker"] for c in answer["chunks"]}
        assert doomed_id not in workers and "master" not in workers and len(workers) == 1
        prefix = chunk["key"].rsplit(".", 1)[0]
        assert f"{prefix}.1" in {c["key"] for c in answer["chunks"]}  # its second try, elsewhere
        assert system.runtime(project).predictions.counters.reassigned >= 1
    finally:
        worker.terminate()
        await worker.wait()


async def test_bad_answers_are_refused_and_their_chunk_is_computed_elsewhere(system):
    project = (await system.create_project(status="paused"))["id"]
    batch = pixels(20, seed=7)
    async with predictor(system, project) as liar:
        await wait_predictors(system, project, 1)
        request = asyncio.create_task(post(system, project, batch))
        lies = [
            lambda p: np.full_like(p, np.nan),  # not finite
            lambda p: p[:-1],  # one row short
            lambda p: p * 2,  # not probabilities
        ]
        for lie in lies:
            chunk = await liar.expect("predict")
            await liar.ws.send(prediction_frame(chunk["key"], lie(liar.answer(chunk)), 5.0))
            await liar.expect("error")
        response = await request
        assert liar.errors == ["bad_values", "bad_size", "bad_values"]
    assert response.status_code == 200, response.text
    answer = response.json()
    expected, iteration = await closure_probabilities(system, project, batch)
    assert_same(answer, expected, iteration)
    assert [c["worker"] for c in answer["chunks"]] == ["master"]  # three tries failed: the fallback computed it
    assert system.runtime(project).predictions.counters.refused == 3
    assert await system.metric("mlitb_predict_refused_total", f'project="{project}"') == 3
    assert await system.metric("mlitb_predict_fallback_chunks_total", f'project="{project}"') == 1


async def test_a_plausible_but_wrong_answer_fails_its_spot_check_and_excludes_the_worker(system):
    project = (await system.create_project(status="paused"))["id"]
    batch = pixels(30, seed=8)
    async with predictor(system, project) as liar:
        await wait_predictors(system, project, 1)
        request = asyncio.create_task(post(system, project, batch))
        chunk = await liar.expect("predict")
        uniform = np.full((chunk["count"], 10), 0.1, np.float32)  # finite probabilities, sums of 1: only wrong
        await liar.ws.send(prediction_frame(chunk["key"], uniform, 5.0))
        error = await liar.expect("error")
        response = await request
    assert (error["code"], error["fatal"]) == ("untrusted", True)
    assert "master's recomputation" in error["message"]
    assert response.status_code == 200, response.text
    answer = response.json()
    expected, iteration = await closure_probabilities(system, project, batch)
    assert_same(answer, expected, iteration)
    assert [c["worker"] for c in answer["chunks"]] == ["master"]
    counters = system.runtime(project).predictions.counters
    assert (counters.checks_failed, counters.checks_passed) == (1, 0)


async def test_a_training_python_worker_also_answers_predictions(system, tmp_path: Path):
    project = (await system.create_project(status="paused"))["id"]
    worker = await start_worker(system, project, tmp_path)
    try:
        await wait_predictors(system, project, 1)
        assert (await system.api.get(f"/api/projects/{project}")).json()["trainers"] == 1
        batch = pixels(300, seed=9)
        response = await post(system, project, batch)
        assert response.status_code == 200, response.text
        answer = response.json()
        expected, iteration = await closure_probabilities(system, project, batch)
        assert_same(answer, expected, iteration)
        assert {c["worker"] for c in answer["chunks"]} == set(system.runtime(project).predictions.scheduler.workers)
    finally:
        worker.terminate()
        await worker.wait()


# ------------------------------------------------------------ limits and access


async def test_limits_per_request_and_per_address(tuned_system):
    system = tuned_system
    project = (await system.create_project(status="paused"))["id"]
    too_many = await post(system, project, pixels(301))
    assert too_many.status_code == 413 and "at most 300" in too_many.json()["error"]
    too_large = await system.api.post(f"/api/projects/{project}/predict", content=b"x" * (300 * 784 + 1001),
                                      headers={"Content-Type": "application/msgpack"})
    assert too_large.status_code == 413 and str(300 * 784 + 1000) in too_large.json()["error"]
    # the body limit refuses before the endpoint (hardening.py), so that one does not count below
    for _ in range(2):
        assert (await post(system, project, pixels(4))).status_code == 200
    limited = await post(system, project, pixels(4))  # the fourth request of a burst of three
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
    assert "too many prediction requests" in limited.json()["error"]


async def test_hostile_bodies_get_a_400_naming_the_field(system):
    project = (await system.create_project(status="paused"))["id"]
    url = f"/api/projects/{project}/predict"
    cases = [
        (b"\xc1", "application/msgpack", "body"),
        (msgpack.packb({"shape": [2, 28, 28], "pixels": b""}), "application/msgpack", "shape"),
        (msgpack.packb({"shape": [2, 28, 28, 1], "pixels": b"\0" * 10}), "application/msgpack", "pixels"),
        (msgpack.packb({"shape": [1, 28, 28, 2], "pixels": b"\0" * 1568}), "application/msgpack", "shape"),
    ]
    for body, kind, field in cases:
        response = await system.api.post(url, content=body, headers={"Content-Type": kind})
        assert response.status_code == 400 and response.json()["field"] == field, response.text
    garbage = await system.api.post(url, files=[("files", ("a.png", b"not an image", "image/png"))])
    assert garbage.status_code == 400 and garbage.json()["field"] == "files[0]"
    assert "a.png" in garbage.json()["error"]
    wrong_type = await system.api.post(url, content=b"{}", headers={"Content-Type": "application/json"})
    assert wrong_type.status_code == 415
    assert (await system.api.post("/api/projects/nope/predict", content=b"")).status_code == 404


async def test_a_project_can_require_the_admin_token(system):
    project = (await system.create_project(status="paused", predict_access="admin"))["id"]
    refused = await post(system, project, pixels(2))
    assert refused.status_code == 401
    assert (await post(system, project, pixels(2), headers=ADMIN)).status_code == 200
    opened = await system.api.patch(f"/api/projects/{project}", json={"predict_access": "public"}, headers=ADMIN)
    assert opened.json()["predict_access"] == "public"
    assert (await post(system, project, pixels(2))).status_code == 200
    bad = await system.api.patch(f"/api/projects/{project}", json={"predict_access": "everyone"}, headers=ADMIN)
    assert bad.status_code == 400 and bad.json()["field"] == "predict_access"


# ------------------------------------------------------------ the command line


async def test_mlitb_predict_through_the_master_matches_mlitb_predict_on_the_closure(system, tmp_path: Path):
    project = (await system.create_project(status="paused"))["id"]
    folder = tmp_path / "images"
    folder.mkdir()
    for i, array in enumerate(pixels(12, seed=11)):
        Image.fromarray(array.squeeze(), "L").save(folder / f"{i:02d}.png")
    closure_path = tmp_path / "model.closure.json"
    closure_path.write_text((await system.api.get(f"/api/projects/{project}/closure")).text)
    env = {**os.environ, "PYTHONPATH": str(REPO), "MLITB_ADMIN_TOKEN": TOKEN}

    async def mlitb(*args: str) -> str:
        proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "mlitb.cli", "predict", *args, cwd=REPO,
                                                    env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()
        return out.decode()

    remote = json.loads(await mlitb("--master", system.master_url, "--project", project, "--json", "--batch", "5",
                                    str(folder)))
    files = sorted(folder.iterdir())
    assert [p["path"] for p in remote["predictions"]] == [str(f) for f in files]
    local = await mlitb(str(closure_path), *map(str, files), "--top", "1")
    local_top = [line.split()[1] for line in local.splitlines() if line.startswith("  1.")]
    assert [p["class"] for p in remote["predictions"]] == local_top
    closure = load_closure(closure_path.read_text())
    expected = classify(closure, np.stack([image_pixels(str(f), (28, 28, 1)) for f in files]))
    got = np.array([p["probabilities"] for p in remote["predictions"]])
    assert np.abs(got - expected).max() <= TOLERANCE
    assert remote["parameters_iterations"] == [closure.training.iteration]
