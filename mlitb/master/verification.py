"""Recompute a result from its work and say whether the claim matches (pure; runs in the verifier process).

A result is a prefix of the work's seeded example order (work_order.py), so
the master can repeat it exactly with the numpy engine: the same parameters,
the same shards in the same order, the same seed and batch sizes. Honest
engines agree to ~1e-5 relative (the JS/numpy parity vectors); a wrong,
scaled, sign-flipped, permuted or partly invented gradient misses by orders
of magnitude, so the default tolerance of 1e-3 separates them with room on
both sides. `compare` names what differs and, for the gradient, which
parameter block (layer) differs most.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from mlitb.closure import Normalization
from mlitb.data.shards import decode_shard
from mlitb.local_steps import PartResult, run_local_steps
from mlitb.model import Net
from mlitb.model.layout import ParamBlock
from mlitb.worker.compute import WorkExamples, gather, recompute


@dataclass(frozen=True)
class VerifySettings:
    tolerance: float = 1e-3  # ‖claimed − recomputed‖ / ‖recomputed‖ of the whole gradient, float64
    block_tolerance: float = 1e-2  # the same per parameter block, relative to max(‖block‖, 1e-3 ‖whole‖)
    loss_tolerance: float = 1e-3  # relative, on loss_sum
    correct_slack: float = 0.01  # |Δcorrect| ≤ 1 + this × count (argmax ties may fall either way)
    queue: int = 4  # checks waiting or running; more are dropped and counted
    niceness: int = 5  # the verifier process yields the CPU to the master and its workers


@dataclass(frozen=True)
class Work:
    """What the master sent: everything needed to repeat the computation."""

    layers: list
    normalization: dict[str, float]
    params: bytes  # float32 parameters of that iteration
    blobs: tuple[bytes, ...]  # the work's shard blobs, in the `shards` order of the work frame
    seed: int


@dataclass(frozen=True)
class Claim:
    """What the client said it computed."""

    grad: bytes  # float32 grad_sum
    count: int
    loss_sum: float
    correct: int
    batches: tuple[int, ...]
    steps: tuple[int, ...] = ()  # local steps: batches per step, in order (() = a gradient)
    local_learning_rate: float = 0.0  # the project's, with local steps


@dataclass(frozen=True)
class Verdict:
    passed: bool
    reasons: tuple[str, ...]  # empty when passed; e.g. "grad differs by 1.0e+03 relative (worst: layer 1 weights)"
    grad_error: float  # relative error of the whole gradient (inf when the count could not be repeated)
    worst_block: str | None


_nets: dict[str, Net] = {}


def _net(layers: list) -> Net:
    key = json.dumps(layers, sort_keys=True)
    if key not in _nets:
        _nets.clear()  # one project's net at a time is enough for a cache
        _nets[key] = Net(layers)
    return _nets[key]


def verify(work: Work, claim: Claim, settings: VerifySettings) -> Verdict:
    """Recompute `claim` from `work` and compare (CPU-bound: runs in the verifier process)."""
    net = _net(work.layers)
    examples = gather([decode_shard(blob) for blob in work.blobs])
    if claim.steps:
        return _verify_local_steps(net, work, claim, examples, settings)
    if sum(claim.batches) != claim.count or claim.count > examples.count:
        return Verdict(False, (f"count {claim.count} cannot be repeated: the work holds {examples.count} examples "
                               f"and the batches sum to {sum(claim.batches)}",), float("inf"), None)
    norm = Normalization(float(work.normalization.get("scale", 1 / 255)), float(work.normalization.get("offset", 0.0)))
    params = np.frombuffer(work.params, np.float32)
    done = recompute(net.gradient, params, examples, norm, work.seed, claim.batches)
    return compare(claim, done.grad_sum, done.loss_sum, done.correct, net.layout, settings)


def _verify_local_steps(net: Net, work: Work, claim: Claim, examples: WorkExamples,
                        settings: VerifySettings) -> Verdict:
    """H local SGD steps repeated exactly: step h walks the order of seed + h with its listed batches, from the
    parameters the steps before it left (local_steps.py); the claim is (start − end) × count."""
    cuts = np.cumsum((0, *claim.steps))
    per_step = [claim.batches[cuts[h]:cuts[h + 1]] for h in range(len(claim.steps))]
    if sum(claim.batches) != claim.count or any(sum(b) > examples.count for b in per_step):
        return Verdict(False, (f"count {claim.count} cannot be repeated: each local step covers at most the work's "
                               f"{examples.count} examples",), float("inf"), None)
    norm = Normalization(float(work.normalization.get("scale", 1 / 255)), float(work.normalization.get("offset", 0.0)))

    def part(w: np.ndarray, h: int) -> PartResult:
        done = recompute(net.gradient, w, examples, norm, (work.seed + h) & 0xFFFFFFFF, per_step[h])
        return PartResult(done.grad_sum, done.count, done.loss_sum, done.correct)

    local = run_local_steps(part, np.frombuffer(work.params, np.float32), len(claim.steps), claim.local_learning_rate)
    return compare(claim, local.grad_sum, local.loss_sum, local.correct, net.layout, settings)


def compare(claim: Claim, grad: np.ndarray, loss_sum: float, correct: int, layout: list[ParamBlock],
            settings: VerifySettings) -> Verdict:
    """Pass, or which of grad (and its worst block), loss_sum, correct differ beyond tolerance."""
    claimed = np.frombuffer(claim.grad, np.float32).astype(np.float64)
    ref = np.asarray(grad, np.float64)
    reasons: list[str] = []
    if claimed.shape != ref.shape or not np.isfinite(claimed).all():
        return Verdict(False, ("grad has the wrong size or non-finite values",), float("inf"), None)
    whole = float(np.linalg.norm(ref))
    error = float(np.linalg.norm(claimed - ref)) / max(whole, 1e-30)
    worst, worst_error = None, 0.0
    for block in layout:
        part = slice(block.offset, block.offset + block.size)
        denom = max(float(np.linalg.norm(ref[part])), 1e-3 * whole, 1e-30)
        block_error = float(np.linalg.norm(claimed[part] - ref[part])) / denom
        if block_error > worst_error:
            worst, worst_error = f"layer {block.layer} {block.kind}", block_error
    if error > settings.tolerance or worst_error > settings.block_tolerance:
        reasons.append(f"grad differs by {error:.1e} relative (tolerance {settings.tolerance:g}); "
                       f"worst block: {worst} ({worst_error:.1e})")
    if abs(claim.loss_sum - loss_sum) > settings.loss_tolerance * max(abs(loss_sum), 1e-6):
        reasons.append(f"loss_sum {claim.loss_sum:.6g} differs from the recomputed {loss_sum:.6g}")
    if abs(claim.correct - correct) > 1 + settings.correct_slack * claim.count:
        reasons.append(f"correct {claim.correct} differs from the recomputed {correct}")
    return Verdict(not reasons, tuple(reasons), error, worst)
