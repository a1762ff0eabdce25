"""Bootstrap confidence intervals and paired significance tests, for every metric through one representation.

A metric is a `Statistic`: per-example sufficient statistics `items` [n, k] and a `score` function from any
such array (a resample of the rows, or a row-wise mix of two systems) to the metric's value. Mean metrics keep
one score per example; corpus metrics keep the counts they sum (BLEU n-gram matches, chrF character matches,
NLL and token counts); classification keeps (gold, predicted) class indices. Resampling rows and recomputing
the score is then right for corpus-level metrics too, where a mean of per-example scores would not be.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np

Score = Callable[[np.ndarray], "float | np.ndarray"]


@dataclasses.dataclass(frozen=True)
class Statistic:
    items: np.ndarray  # [n, k] per-example sufficient statistics
    score: Score  # items (or any row subset or resample of them) -> the metric
    resample: bool = True  # False: `score` is only right on all the items (METEOR's Java aggregate): no interval

    @property
    def value(self) -> float | np.ndarray:
        return self.score(self.items)

    def __len__(self) -> int:
        return len(self.items)


def mean_statistic(values: Sequence[float], scale: float = 100.0) -> Statistic:
    """A metric that is the mean of per-example scores (in [0, 1]), reported times `scale` (percent)."""
    items = np.asarray(values, np.float64).reshape(-1, 1)
    return Statistic(items, lambda a: float(scale * a[:, 0].mean()))


def ratio_statistic(numerators: Sequence[float], denominators: Sequence[float],
                    transform: Callable[[float], float] = float) -> Statistic:
    """transform(sum of numerators / sum of denominators), e.g. perplexity = exp(total NLL / total tokens)."""
    items = np.stack([np.asarray(numerators, np.float64), np.asarray(denominators, np.float64)], 1)
    return Statistic(items, lambda a: float(transform(a[:, 0].sum() / max(a[:, 1].sum(), 1e-12))))


def _quantiles(samples: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    tail = (1 - confidence) / 2
    low, high = np.quantile(samples, [tail, 1 - tail], axis=0)
    return low, high


def _check(stat: Statistic, n_resamples: int, confidence: float) -> int:
    if len(stat) == 0:
        raise ValueError("cannot compute a metric over zero examples")
    if n_resamples < 1 or not 0 < confidence < 1:
        raise ValueError(f"need n_resamples >= 1 and 0 < confidence < 1, got {n_resamples} and {confidence}")
    return len(stat)


def bootstrap_ci(stat: Statistic, n_resamples: int = 1000, confidence: float = 0.95,
                 seed: int = 0) -> tuple[float | np.ndarray, float | np.ndarray]:
    """Percentile bootstrap interval: resample the examples with replacement, recompute the metric."""
    n = _check(stat, n_resamples, confidence)
    rng = np.random.default_rng(seed)
    samples = np.array([stat.score(stat.items[rng.integers(0, n, n)]) for _ in range(n_resamples)])
    low, high = _quantiles(samples, confidence)
    return (float(low), float(high)) if np.ndim(low) == 0 else (low, high)


def with_ci(stat: Statistic, n_resamples: int, confidence: float = 0.95, seed: int = 0) -> dict[str, float]:
    """{"value", "low", "high"} of a scalar metric; without resamples (n_resamples 0) just {"value"}."""
    out = {"value": float(stat.value)}
    if n_resamples and stat.resample:
        out["low"], out["high"] = bootstrap_ci(stat, n_resamples, confidence, seed)
    return out


def paired_test(a: Statistic, b: Statistic, n_resamples: int = 1000, confidence: float = 0.95,
                seed: int = 0) -> dict[str, float]:
    """B minus A on the same examples: the difference, its paired-bootstrap interval, and the two-sided p-value
    of a paired approximate randomization test (swap the two systems' outputs on random examples; Riezler and
    Maxwell 2005, the test sacrebleu uses too)."""
    n = _check(a, n_resamples, confidence)
    if not (a.resample and b.resample):
        return {"delta": float(b.value) - float(a.value)}  # no resampling: the difference alone
    if a.items.shape != b.items.shape:
        raise ValueError(f"paired test needs the same examples: {a.items.shape} vs {b.items.shape} statistics")
    rng = np.random.default_rng(seed)
    delta = float(b.value) - float(a.value)
    boot = []
    for _ in range(n_resamples):
        idx = rng.integers(0, n, n)
        boot.append(b.score(b.items[idx]) - a.score(a.items[idx]))
    low, high = _quantiles(np.array(boot), confidence)
    extreme = 0
    for _ in range(n_resamples):
        swap = (rng.random(n) < 0.5)[:, None]
        mixed_b, mixed_a = np.where(swap, a.items, b.items), np.where(swap, b.items, a.items)
        extreme += abs(b.score(mixed_b) - a.score(mixed_a)) >= abs(delta) - 1e-12
    return {"delta": delta, "low": float(low), "high": float(high),
            "p_value": (extreme + 1) / (n_resamples + 1)}
