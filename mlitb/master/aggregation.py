"""Robust aggregation of per-client mean gradients into the one mean gradient the optimizer applies.

Anonymous clients may send anything that passes validation, so the update is
not Σgrad/Σcount: each client contributes its mean gradient (grad_sum / count)
with a weight capped at the examples it was allocated and at a share of the
total, and the means are combined by a robust rule:

* ``centered_clip`` (default; Karimireddy, He & Jaggi 2021): starting from the
  previous aggregate v, v ← v + Σ wᵢ·clip(mᵢ − v, τ), τ = median‖mᵢ − v‖ × factor.
  A client can move the result by at most wᵢ·τ, whatever it sends; honest
  clients near the centre pass unclipped.
* ``trimmed_mean``: coordinate-wise, dropping the largest and smallest fraction.
* ``mean``: today's count-weighted mean (no robustness; for comparison).

Then `NormHistory` bounds the aggregate's norm by the median of the last W
accepted aggregates' norms × factor, so one iteration cannot inflate AdaGrad's
accumulator or Adam's moments. Per-client norm outliers are flagged relative to
this iteration's median client norm, never an absolute constant. Norms are float64
values (mlitb/norms.py: float32 dot products, redone in float64 when they overflow). Pure numpy, no I/O: the loop owns the (K, P) matrix of means.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from mlitb.norms import norm

RULES = ("centered_clip", "trimmed_mean", "mean")


@dataclass(frozen=True)
class AggregationSettings:
    """Per project; defaults chosen so clean runs lose ≤ 0.5 pp (bench/aggregation_accuracy.py)."""

    rule: str = "centered_clip"
    clip_iterations: int = 1  # one suffices when centred on the previous aggregate (the paper's momentum form)
    clip_factor: float = 2.0  # τ = median distance × this
    trim_fraction: float = 0.25  # trimmed_mean drops this fraction at each end, per coordinate
    max_share: float = 0.5  # no client's weight above this share of the total (when K × share ≥ 1)
    norm_window: int = 20  # W: aggregate norms remembered
    norm_factor: float = 3.0  # aggregate norm ≤ median of the last W × this
    outlier_factor: float = 5.0  # client norm > median client norm × this: an outlier

    def __post_init__(self) -> None:
        if self.rule not in RULES:
            raise ValueError(f"aggregation rule must be one of {', '.join(RULES)}, got {self.rule!r}")
        if not 0 <= self.trim_fraction < 0.5:
            raise ValueError(f"trim_fraction must be in [0, 0.5), got {self.trim_fraction}")
        if not 0 < self.max_share <= 1:
            raise ValueError(f"max_share must be in (0, 1], got {self.max_share}")
        if self.clip_iterations < 1 or self.clip_factor <= 0 or self.norm_factor < 1 or self.outlier_factor < 1:
            raise ValueError("clip_iterations ≥ 1, clip_factor > 0, norm_factor ≥ 1 and outlier_factor ≥ 1 are required")
        if self.norm_window < 1:
            raise ValueError(f"norm_window must be ≥ 1, got {self.norm_window}")


@dataclass(frozen=True)
class ClientDiagnostics:
    """What aggregation saw of one client, for its trust record."""

    weight: float  # its normalised weight
    norm: float  # ‖mᵢ‖
    distance: float  # ‖mᵢ − centre‖ in the last clipping iteration (nan for other rules)
    clipped: bool
    outlier: bool


@dataclass(frozen=True)
class Aggregate:
    gradient: np.ndarray  # the mean gradient to apply, float32 (P,)
    norm: float  # its norm after the history bound
    scaled: float  # factor the history bound applied (1.0 = untouched)
    clients: tuple[ClientDiagnostics, ...]


@dataclass
class NormHistory:
    """The norms of the last W accepted aggregates: the yardstick for the next one."""

    window: int = 20
    norms: deque[float] = field(default_factory=deque)

    def bound(self, factor: float) -> float | None:
        """The largest norm the next aggregate may have; None until there is a history."""
        return float(np.median(self.norms)) * factor if self.norms else None

    def record(self, norm: float) -> None:
        self.norms.append(float(norm))
        while len(self.norms) > self.window:
            self.norms.popleft()


def client_weights(counts: np.ndarray, caps: np.ndarray, max_share: float) -> np.ndarray:
    """Normalised weights: each count capped at its allocation, then no weight above `max_share`.

    The share cap is exact water-filling: the m largest are set to a common c
    with c = share × (m·c + rest), the smallest m that makes it consistent.
    When K × share < 1 no such cap exists and the weights are equal.
    """
    w = np.minimum(np.asarray(counts, np.float64), np.asarray(caps, np.float64))
    if w.size == 0 or (w <= 0).all():
        raise ValueError("aggregation needs at least one client with a positive weight")
    w = np.maximum(w, 0.0)
    k = w.size
    if k * max_share < 1:
        return np.full(k, 1.0 / k)
    order = np.sort(w)[::-1]
    total = order.sum()
    if order[0] <= max_share * total:
        return w / total
    rest = total
    for m in range(1, k):
        rest -= order[m - 1]
        c = max_share * rest / (1 - max_share * m)
        if order[m] <= c <= order[m - 1]:
            capped = np.minimum(w, c)
            return capped / capped.sum()
    return np.full(k, 1.0 / k)


def row_norms(rows: np.ndarray, centre: np.ndarray | None = None) -> np.ndarray:
    """‖rowᵢ − centre‖ as float64, row by row (no (K, P) temporary); mlitb.norms explains the speed."""
    out = np.empty(rows.shape[0], np.float64)
    buf = np.empty(rows.shape[1], np.float32)
    for i, row in enumerate(rows):
        out[i] = norm(row if centre is None else np.subtract(row, centre, out=buf))
    return out


def aggregate(means: np.ndarray, weights: np.ndarray, settings: AggregationSettings,
              previous: np.ndarray | None, history: NormHistory) -> Aggregate:
    """Combine K clients' mean gradients (K, P) with their normalised weights; record the accepted norm.

    `previous` is the last aggregate (the clipping centre; zeros when None).
    The caller applies `gradient` and keeps it as the next `previous`.
    """
    means = np.asarray(means, np.float32)
    weights = np.asarray(weights, np.float64)
    if means.ndim != 2 or weights.shape != (means.shape[0],) or means.shape[0] == 0:
        raise ValueError(f"means must be (K, P) with K ≥ 1 and weights (K,), got {means.shape} and {weights.shape}")
    weights = weights / weights.sum()
    norms = row_norms(means)
    median_norm = float(np.median(norms))
    outliers = norms > median_norm * settings.outlier_factor if median_norm > 0 else np.zeros(len(norms), bool)
    distances = np.full(len(norms), np.nan)
    clipped = np.zeros(len(norms), bool)
    if settings.rule == "mean":
        result = _weighted_sum(means, weights)
    elif settings.rule == "trimmed_mean":
        result = _trimmed_mean(means, settings.trim_fraction)
    else:
        result, distances, clipped = _centered_clip(means, weights, settings, previous)
    size = norm(result)
    bound = history.bound(settings.norm_factor)
    scaled = 1.0
    if bound is not None and size > bound > 0:
        scaled = bound / size
        result = result * np.float32(scaled)
        size = bound
    history.record(size)
    clients = tuple(
        ClientDiagnostics(float(w), float(n), float(d), bool(c), bool(o))
        for w, n, d, c, o in zip(weights, norms, distances, clipped, outliers)
    )
    return Aggregate(result.astype(np.float32, copy=False), size, scaled, clients)


def _weighted_sum(means: np.ndarray, weights: np.ndarray) -> np.ndarray:
    return weights.astype(np.float32) @ means


def _trimmed_mean(means: np.ndarray, fraction: float) -> np.ndarray:
    k = means.shape[0]
    cut = int(np.floor(k * fraction))
    if cut == 0:
        return means.mean(axis=0, dtype=np.float32)
    return np.sort(means, axis=0)[cut:k - cut].mean(axis=0, dtype=np.float32)


def _centered_clip(means: np.ndarray, weights: np.ndarray, settings: AggregationSettings,
                   previous: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    v = np.zeros(means.shape[1], np.float32) if previous is None else np.asarray(previous, np.float32).copy()
    distances = np.zeros(means.shape[0])
    scale = np.ones(means.shape[0])
    for _ in range(settings.clip_iterations):
        distances = row_norms(means, v)
        tau = float(np.median(distances)) * settings.clip_factor
        scale = np.where(distances > tau, tau / np.maximum(distances, 1e-300), 1.0)
        coef = weights * scale  # v + Σ coefᵢ (mᵢ − v) = v (1 − Σ coef) + Σ coefᵢ mᵢ
        v = v * np.float32(1.0 - coef.sum()) + coef.astype(np.float32) @ means
    return v, distances, scale < 1.0


@dataclass
class ClipStream:
    """Centered clipping one result at a time in O(P) memory: the form the loop's reduce step can run.

    Each client's mean mᵢ = gᵢ / cᵢ is clipped against `centre` (the previous
    aggregate) with radius `tau`, taken from the previous iteration's distances
    (`finish` returns the next one), so a result is folded in as it arrives:
    ‖mᵢ − v‖² = ‖gᵢ‖²/cᵢ² − 2 gᵢ·v/cᵢ + ‖v‖² (two dot products, no copy), and
    Σ wᵢsᵢ(mᵢ − v) = Σ (wᵢsᵢ/cᵢ) gᵢ − (Σ wᵢsᵢ) v (one scaled add). Weights are
    min(count, cap, max_share × `total_allocated`). With `tau` None (the first
    iteration) the means are kept and `finish` runs `aggregate` on them.
    """

    centre: np.ndarray
    tau: float | None
    total_allocated: int
    settings: AggregationSettings = field(default_factory=AggregationSettings)

    def __post_init__(self) -> None:
        self.centre = np.asarray(self.centre, np.float32)
        self._sum = np.zeros_like(self.centre)
        self._buf = np.empty_like(self.centre)
        self._centre_sq = norm(self.centre) ** 2
        self._coef = 0.0
        self._weights: list[float] = []
        self._norms: list[float] = []
        self._distances: list[float] = []
        self._clipped: list[bool] = []
        self._rows: list[np.ndarray] = []

    def add(self, grad_sum: np.ndarray, count: int, cap: int, grad_norm: float | None = None) -> None:
        """Fold in one accepted result (its gradient sum, claimed count, allocated examples).

        `grad_norm` is ‖grad_sum‖ when the caller has it already (protocol.grad_norm at parse time):
        it saves one pass over P.
        """
        w = float(min(count, cap, self.settings.max_share * self.total_allocated)) if self.total_allocated else float(min(count, cap))
        g_norm = norm(grad_sum) if grad_norm is None else float(grad_norm)
        self._weights.append(w)
        self._norms.append(g_norm / count)
        if self.tau is None:
            self._rows.append(np.multiply(grad_sum, np.float32(1.0 / count)))
            return
        gv = float(np.dot(grad_sum, self.centre))
        distance = float(np.sqrt(max(g_norm**2 / count**2 - 2.0 * gv / count + self._centre_sq, 0.0)))
        s = min(1.0, self.tau / distance) if distance > 0 else 1.0
        self._distances.append(distance)
        self._clipped.append(s < 1.0)
        self._coef += w * s
        np.multiply(grad_sum, np.float32(w * s / count), out=self._buf)
        np.add(self._sum, self._buf, out=self._sum)

    def finish(self, history: NormHistory) -> tuple[Aggregate, float | None]:
        """The aggregate (history-bounded, recorded) and the clip radius for the next iteration's stream."""
        if not self._weights:
            raise ValueError("aggregation needs at least one result")
        weights = np.asarray(self._weights) / sum(self._weights)
        if self.tau is None:
            settings = AggregationSettings(**{**self.settings.__dict__, "rule": "centered_clip"})
            result = aggregate(np.stack(self._rows), weights, settings, self.centre, history)
            return result, float(np.median([c.distance for c in result.clients])) * self.settings.clip_factor
        total = sum(self._weights)
        v = self.centre * np.float32(1.0 - self._coef / total) + self._sum * np.float32(1.0 / total)
        size = norm(v)
        bound = history.bound(self.settings.norm_factor)
        scaled = 1.0
        if bound is not None and size > bound > 0:
            scaled = bound / size
            v *= np.float32(scaled)
            size = bound
        history.record(size)
        median_norm = float(np.median(self._norms))
        clients = tuple(
            ClientDiagnostics(float(w), n, d, c, bool(median_norm > 0 and n > median_norm * self.settings.outlier_factor))
            for w, n, d, c in zip(weights, self._norms, self._distances, self._clipped)
        )
        next_tau = float(np.median(self._distances)) * self.settings.clip_factor
        return Aggregate(v, size, scaled, clients), next_tau


class Reduction:
    """The open iteration's accepted results, combined by the project's rule into one mean gradient.

    `centered_clip` folds each result in on arrival (`ClipStream`, O(P) memory);
    `trimmed_mean` and `mean` keep the K client means and combine them at the
    end. Totals for the metrics (count, loss, correct) ride along; counts here
    are already capped at what the client was allocated, never taken on faith.
    """

    def __init__(self, size: int, settings: AggregationSettings, centre: np.ndarray | None, tau: float | None,
                 total_allocated: int) -> None:
        self.settings = settings
        self.centre = np.zeros(size, np.float32) if centre is None else centre
        self.total_allocated = total_allocated
        self.stream = ClipStream(self.centre, tau, total_allocated, settings) if settings.rule == "centered_clip" else None
        self._rows: list[np.ndarray] = []
        self._counts: list[int] = []
        self._caps: list[int] = []
        self.clients: list[str] = []
        self.count = 0
        self.loss_sum = 0.0
        self.correct = 0

    @property
    def contributors(self) -> int:
        return len(self.clients)

    def add(self, client_id: str, grad_sum: np.ndarray, count: int, cap: int, loss_sum: float, correct: int,
            grad_norm: float | None = None) -> None:
        """One accepted result: the gradient sum over `count` examples of a client allocated `cap`."""
        if self.stream is not None:
            self.stream.add(grad_sum, count, cap, grad_norm)
        else:
            self._rows.append(np.multiply(grad_sum, np.float32(1.0 / count)))
            self._counts.append(count)
            self._caps.append(cap)
        self.clients.append(client_id)
        self.count += count
        self.loss_sum += loss_sum
        self.correct += correct

    def finish(self, history: NormHistory) -> tuple[Aggregate, float | None]:
        """The aggregate to apply and the clip radius for the next iteration (None for the other rules)."""
        if self.stream is not None:
            return self.stream.finish(history)
        weights = client_weights(np.asarray(self._counts), np.asarray(self._caps), self.settings.max_share)
        return aggregate(np.stack(self._rows), weights, self.settings, self.centre, history), None
