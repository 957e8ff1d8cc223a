"""Robust aggregation: attackers are bounded, honest clients pass, weights are capped, norms stay bounded."""

from __future__ import annotations

import numpy as np
import pytest

from mlitb.master.aggregation import (
    AggregationSettings,
    ClipStream,
    NormHistory,
    aggregate,
    client_weights,
    row_norms,
)

P = 1000


def honest(k: int, seed: int = 0, centre: float = 1.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (centre + 0.1 * rng.standard_normal((k, P))).astype(np.float32)


def run(means, rule="centered_clip", previous=None, history=None, weights=None, **settings):
    weights = np.full(len(means), 1.0 / len(means)) if weights is None else weights
    return aggregate(means, weights, AggregationSettings(rule=rule, **settings), previous, history or NormHistory())


@pytest.mark.parametrize("rule", ["centered_clip", "trimmed_mean"])
@pytest.mark.parametrize("attack", [lambda m: m * 1000, lambda m: -m * 1000, lambda m: m * 0 + 1e4])
def test_a_quarter_of_attackers_barely_moves_robust_rules(rule, attack):
    clean = honest(8)
    target = clean.mean(axis=0)
    poisoned = clean.copy()
    poisoned[:2] = attack(poisoned[:2])
    got = run(poisoned, rule, previous=target * 0.9).gradient
    assert np.linalg.norm(got - target) < 0.5 * np.linalg.norm(target)
    spoiled = run(poisoned, "mean").gradient
    assert np.linalg.norm(spoiled - target) > 10 * np.linalg.norm(target)  # the plain mean is taken over


def test_centered_clip_leaves_a_clean_round_close_to_the_mean():
    clean = honest(16, seed=3)
    mean = clean.mean(axis=0)
    got = run(clean, previous=mean * 0.95)
    rel = np.linalg.norm(got.gradient - mean) / np.linalg.norm(mean)
    assert rel < 0.02
    assert not any(c.outlier for c in got.clients)


def test_diagnostics_name_the_clipped_outliers():
    means = honest(8)
    means[5] *= 1000
    got = run(means, previous=means[:5].mean(axis=0))
    assert got.clients[5].clipped and got.clients[5].outlier
    assert got.clients[5].distance > 100 * got.clients[0].distance
    assert not any(c.outlier for i, c in enumerate(got.clients) if i != 5)


def test_the_history_bounds_an_inflated_aggregate():
    history = NormHistory(window=5)
    for seed in range(5):
        run(honest(4, seed), history=history)
    typical = float(np.median(history.norms))
    blown = honest(4, 9) * 1000  # every client inflated: robust rules cannot tell, the history can
    got = run(blown, "mean", history=history, norm_factor=3.0)
    assert got.scaled < 0.01
    assert got.norm == pytest.approx(3.0 * typical)
    assert np.linalg.norm(got.gradient.astype(np.float64)) == pytest.approx(3.0 * typical, rel=1e-5)


def test_weights_are_capped_at_allocation_and_share():
    w = client_weights(np.array([1e6, 100, 100, 100]), np.array([128, 128, 128, 128]), max_share=0.5)
    assert w == pytest.approx(np.array([128, 100, 100, 100]) / 428)  # the 1e6 claim counts as its 128 allocated
    w = client_weights(np.array([1000, 10, 10]), np.array([1000, 1000, 1000]), max_share=0.4)
    assert w.max() == pytest.approx(0.4) and w.sum() == pytest.approx(1.0)
    assert w[1] == pytest.approx(0.3)
    assert client_weights(np.array([5, 1]), np.array([9, 9]), 0.4) == pytest.approx([0.5, 0.5])  # 2 × 0.4 < 1
    with pytest.raises(ValueError, match="positive weight"):
        client_weights(np.array([0]), np.array([0]), 0.5)


def test_norms_are_float64():
    rows = np.full((1, 4), 3e38, np.float32)
    assert np.isfinite(row_norms(rows)).all() and row_norms(rows)[0] == pytest.approx(6e38)


def test_bad_settings_are_refused_naming_the_field():
    with pytest.raises(ValueError, match="rule must be one of"):
        AggregationSettings(rule="krum")
    with pytest.raises(ValueError, match="trim_fraction"):
        AggregationSettings(trim_fraction=0.5)


def test_the_stream_matches_the_matrix_form_and_bounds_attackers():

    counts = [64, 32, 128, 64, 64, 100, 64, 50]
    clean = honest(8, seed=5)
    previous = clean.mean(axis=0) * 0.9
    tau = 0.5 * float(np.median(row_norms(clean, previous)))  # some clients clipped
    stream = ClipStream(previous, tau, total_allocated=sum(counts))
    for m, c in zip(clean, counts):
        stream.add(m * np.float32(c), c, cap=c)
    got, next_tau = stream.finish(NormHistory())
    weights = np.array(counts, float) / sum(counts)
    d = row_norms(clean, previous)
    s = np.minimum(1.0, tau / d)
    expected = previous + ((weights * s)[:, None] * (clean - previous)).sum(axis=0)
    np.testing.assert_allclose(got.gradient, expected, rtol=1e-4, atol=1e-5)
    assert [c.distance for c in got.clients] == pytest.approx(d, rel=1e-4)
    assert next_tau == pytest.approx(float(np.median(d)) * 2.0, rel=1e-4)
    attacked = ClipStream(previous, tau, total_allocated=8 * 64)
    attacked.add(clean[0] * 64 * 1000, 64, cap=64)  # scaled ×1000
    attacked.add(-clean[1] * 10**6, 10**6, cap=64)  # sign-flipped, count inflated to match
    for m in clean[2:]:
        attacked.add(m * 64, 64, cap=64)
    got, _ = attacked.finish(NormHistory())
    assert np.linalg.norm(got.gradient - clean.mean(axis=0)) < 0.2 * np.linalg.norm(clean.mean(axis=0))
    assert got.clients[0].clipped and got.clients[0].outlier
    assert got.clients[1].clipped and got.clients[1].weight == pytest.approx(1 / 8)  # its 10**6 counts as 64
