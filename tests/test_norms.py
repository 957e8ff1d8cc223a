"""Norms that stay finite for large finite float32 vectors."""

import numpy as np
import pytest

from mlitb.norms import norm


def test_ordinary_vectors_match_float64():
    v = np.random.default_rng(0).standard_normal(100_003).astype(np.float32)
    assert norm(v) == pytest.approx(np.linalg.norm(v.astype(np.float64)), rel=1e-6)


def test_large_finite_vectors_are_finite():
    v = np.full(200_000, 3e38, np.float32)
    assert norm(v) == pytest.approx(3e38 * np.sqrt(200_000), rel=1e-6)


def test_non_finite_stays_non_finite_and_zero_is_zero():
    assert not np.isfinite(norm(np.array([1, np.inf], np.float32)))
    assert norm(np.zeros(5, np.float32)) == 0.0
