"""Spot-check recomputation in the real verifier process, against the Python worker's real output on MNIST."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from mlitb.closure import Normalization
from mlitb.data.catalog import get_shard, list_datasets
from mlitb.data.shards import decode_shard
from mlitb.master.verification import Claim, VerifySettings, Work
from mlitb.master.verifier import Verifier
from mlitb.model import Net
from mlitb.store import FileStore
from mlitb.worker.compute import compute, gather
from tests.master_support import mnist_store_dir

LAYERS = [
    {"type": "input", "out_sx": 28, "out_sy": 28, "out_depth": 1},
    {"type": "conv", "sx": 5, "filters": 4, "stride": 1, "pad": 2, "activation": "relu"},
    {"type": "pool", "sx": 2, "stride": 2},
    {"type": "fc", "num_neurons": 16, "activation": "relu"},
    {"type": "dropout", "drop_prob": 0.3},
    {"type": "softmax", "num_classes": 10},
]
SEED = 2_718_281_828


@pytest.fixture(scope="module")
def honest(tmp_path_factory):
    """Three real MNIST train shards, the work built from them, and the Python worker's honest result."""
    root: Path = mnist_store_dir(tmp_path_factory)

    async def blobs() -> tuple[bytes, ...]:
        store = FileStore(root)
        try:
            manifest = (await list_datasets(store))[0]
            return tuple([await get_shard(store, ref.id) for ref in manifest.train.shards[:3]])
        finally:
            await store.close()

    shard_blobs = asyncio.run(blobs())
    net = Net(LAYERS)
    params = net.init_params(11)
    examples = gather([decode_shard(b) for b in shard_blobs])
    result = compute(net.gradient, params, examples, 300, Normalization(), seed=SEED, batch_size=16)
    work = Work(LAYERS, {"scale": 1 / 255, "offset": 0.0}, params.tobytes(), shard_blobs, SEED)
    claim = Claim(result.grad_sum.tobytes(), result.count, result.loss_sum, result.correct, result.batches)
    return net, work, claim, examples.count


def run(coro):
    return asyncio.run(coro)


async def check(work: Work, *claims: Claim, settings: VerifySettings = VerifySettings()):
    verifier = Verifier(settings)
    try:
        verdicts = [await verifier.verify(work, c) for c in claims]
        return verdicts, verifier.stats
    finally:
        await verifier.close()


def changed(claim: Claim, grad: np.ndarray | None = None, **fields) -> Claim:
    data = {**claim.__dict__, **fields}
    if grad is not None:
        data["grad"] = grad.astype(np.float32).tobytes()
    return Claim(**data)


def test_honest_worker_output_passes_and_lies_fail_naming_why(honest):
    net, work, claim, held = honest
    grad = np.frombuffer(claim.grad, np.float32)
    fc = next(b for b in net.layout if b.kind == "weights" and len(b.shape) == 2 and b.shape[0] == 16)
    permuted = grad.copy()
    block = permuted[fc.offset:fc.offset + fc.size]
    block[:] = block.reshape(fc.shape).T.reshape(-1)  # an engine that stores fc weights transposed
    lies = {
        "scaled": changed(claim, grad * 1000),
        "sign": changed(claim, -grad),
        "count_beyond": changed(claim, count=held + 5, batches=(held + 5,)),
        "count_short": changed(claim, count=claim.count - claim.batches[-1], batches=claim.batches[:-1]),
        "permuted": changed(claim, permuted),
        "loss": changed(claim, loss_sum=claim.loss_sum * 0.5),
        "correct": changed(claim, correct=claim.count),
    }
    verdicts, stats = run(check(work, claim, *lies.values()))
    good, *bad = verdicts
    assert good.passed and good.grad_error < 1e-6, good.reasons
    why = dict(zip(lies, bad))
    assert all(not v.passed for v in bad)
    assert "grad differs" in why["scaled"].reasons[0] and why["scaled"].grad_error > 100
    assert "grad differs" in why["sign"].reasons[0]
    assert "cannot be repeated" in why["count_beyond"].reasons[0]
    assert any("grad differs" in r for r in why["count_short"].reasons)
    assert why["permuted"].worst_block == f"layer {fc.layer} weights"
    assert f"worst block: layer {fc.layer} weights" in why["permuted"].reasons[0]
    assert why["loss"].reasons == (f"loss_sum {claim.loss_sum * 0.5:.6g} differs from the recomputed {claim.loss_sum:.6g}",)
    assert "correct" in why["correct"].reasons[0]
    assert (stats.checked, stats.passed, stats.failed, stats.dropped) == (8, 1, 7, 0)


def test_a_full_queue_drops_checks_and_counts_them(honest):
    _, work, claim, _ = honest

    async def flood():
        verifier = Verifier(VerifySettings(queue=1))
        try:
            verdicts = await asyncio.gather(*(verifier.verify(work, claim) for _ in range(3)))
            return verdicts, verifier.stats
        finally:
            await verifier.close()

    verdicts, stats = run(flood())
    assert verdicts[0].passed and verdicts[1:] == [None, None]
    assert (stats.checked, stats.dropped) == (1, 2)


def test_local_steps_are_recomputed_step_by_step(honest):
    """A local-steps result (H = 3 local SGD steps, each on the order of seed + h) reproduces exactly; the same
    result claimed with another local learning rate, or scaled, does not."""
    from mlitb.local_steps import PartResult, run_local_steps

    net, work, _claim, _held = honest
    examples = gather([decode_shard(b) for b in work.blobs])
    params = np.frombuffer(work.params, np.float32)
    batches: list[tuple[int, ...]] = []

    def part(w: np.ndarray, h: int) -> PartResult:
        r = compute(net.gradient, w, examples, 150, Normalization(), seed=(SEED + h) & 0xFFFFFFFF, batch_size=16)
        batches.append(r.batches)
        return PartResult(r.grad_sum, r.count, r.loss_sum, r.correct)

    local = run_local_steps(part, params, 3, 0.05)
    claim = Claim(local.grad_sum.tobytes(), local.count, local.loss_sum, local.correct,
                  tuple(b for step in batches for b in step), tuple(len(step) for step in batches), 0.05)
    verdicts, _ = run(check(work, claim, changed(claim, local_learning_rate=0.5),
                            changed(claim, grad=local.grad_sum * 3)))
    assert verdicts[0].passed, verdicts[0].reasons
    assert not verdicts[1].passed and not verdicts[2].passed
