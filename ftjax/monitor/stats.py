"""Drift statistics between a reference sample (the training inputs) and a current one (production inputs).

Every statistic takes the two samples and returns one number (bigger = more different); `null_threshold`
calibrates an alarm threshold for any of them from the reference alone: the given quantile of the statistic
between the reference and same-sized samples drawn from it, so a threshold fits the sample sizes (a 77-class
label PSI over 300 rows is large from sampling noise alone). Embeddings are compared by the squared maximum
mean discrepancy with an RBF kernel, its p-value from scipy's permutation test.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np
from scipy import stats
from scipy.spatial.distance import jensenshannon

EPS = 1e-4  # the share an empty bin is given, so PSI stays finite (the usual convention)
WORD = re.compile(r"\w+")


def words(text: str) -> list[str]:
    return WORD.findall(text.lower())


def proportions(counts: np.ndarray) -> np.ndarray:
    """Counts to shares, empty bins lifted to EPS and renormalised."""
    p = np.asarray(counts, np.float64) / max(float(np.sum(counts)), 1.0)
    p = np.maximum(p, EPS)
    return p / p.sum()


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population stability index of two count vectors over the same bins: sum (a - e) ln(a / e)."""
    e, a = proportions(expected), proportions(actual)
    return float(np.sum((a - e) * np.log(a / e)))


def quantile_edges(reference: Sequence[float], bins: int) -> np.ndarray:
    """Inner bin edges at the reference's quantiles (ties merged), so each bin holds about 1/bins of it."""
    return np.unique(np.quantile(np.asarray(reference, np.float64), np.linspace(0, 1, bins + 1)[1:-1]))


def binned(values: Sequence[float], edges: np.ndarray) -> np.ndarray:
    return np.bincount(np.searchsorted(edges, np.asarray(values, np.float64), side="right"),
                       minlength=len(edges) + 1)


def length_psi(reference: Sequence[float], current: Sequence[float], bins: int = 10) -> float:
    edges = quantile_edges(reference, bins)
    return psi(binned(reference, edges), binned(current, edges))


def category_counts(reference: Sequence[str], current: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Count vectors of two label samples over the union of their labels."""
    names = sorted(set(reference) | set(current))
    a, b = Counter(reference), Counter(current)
    return np.array([a[n] for n in names]), np.array([b[n] for n in names])


def label_psi(reference: Sequence[str], current: Sequence[str]) -> float:
    return psi(*category_counts(reference, current))


def label_chi2_p(reference: Sequence[str], current: Sequence[str]) -> float:
    """The chi-squared test of homogeneity of two label samples (scipy); 1.0 when there is one label."""
    table = np.stack(category_counts(reference, current))
    table = table[:, table.sum(0) > 0]
    return 1.0 if table.shape[1] < 2 else float(stats.chi2_contingency(table).pvalue)


def vocab_js(reference: Sequence[Sequence[str]], current: Sequence[Sequence[str]]) -> float:
    """Jensen-Shannon distance (base 2, in [0, 1]) of the two samples' word distributions."""
    a = Counter(w for ws in reference for w in ws)
    b = Counter(w for ws in current for w in ws)
    names = sorted(a.keys() | b.keys())
    if not names:
        return 0.0
    return float(jensenshannon([a[n] for n in names], [b[n] for n in names], base=2))


def oov_rate(reference: Sequence[Sequence[str]], current: Sequence[Sequence[str]]) -> float:
    """The share of the current sample's words that never occur in the reference."""
    vocab = {w for ws in reference for w in ws}
    total = sum(map(len, current))
    return sum(w not in vocab for ws in current for w in ws) / total if total else 0.0


def null_threshold(statistic: Callable[[Sequence, Sequence], float], reference: Sequence, size: int, *,
                   rounds: int = 100, quantile: float = 0.99, seed: int = 0) -> float:
    """The `quantile` of `statistic(rest, sample)` where `sample` is `size` reference rows drawn without
    replacement and `rest` the others: how large the statistic gets with no drift at these sample sizes."""
    n = len(reference)
    size = min(size, n // 2)  # keep a reference at least as large as the sample
    if size < 1:
        raise ValueError(f"the reference has {n} rows: too few to calibrate a threshold")
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(rounds):
        order = rng.permutation(n)
        values.append(statistic([reference[i] for i in order[size:]], [reference[i] for i in order[:size]]))
    return float(np.quantile(values, quantile))


def rbf_kernel(x: np.ndarray, bandwidth: float) -> np.ndarray:
    sq = np.sum(x * x, 1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * x @ x.T, 0.0)
    return np.exp(-d2 / (2.0 * bandwidth ** 2))


def median_bandwidth(x: np.ndarray) -> float:
    """The median pairwise distance (the usual RBF bandwidth heuristic); 1.0 when all points coincide."""
    sq = np.sum(x * x, 1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * x @ x.T, 0.0)
    med = float(np.sqrt(np.median(d2[np.triu_indices(len(x), 1)]))) if len(x) > 1 else 0.0
    return med or 1.0


def mmd2(kernel: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """The biased squared MMD between index sets `a` and `b` of one precomputed kernel matrix."""
    return float(kernel[np.ix_(a, a)].mean() + kernel[np.ix_(b, b)].mean() - 2.0 * kernel[np.ix_(a, b)].mean())


def mmd_test(reference: np.ndarray, current: np.ndarray, *, permutations: int = 500, seed: int = 0
             ) -> tuple[float, float]:
    """(squared MMD, permutation p-value) of two embedding samples [n, d], RBF kernel at the median distance of
    the pooled sample. The kernel matrix is computed once; scipy's permutation test reshuffles row indices."""
    x = np.concatenate([reference, current]).astype(np.float64)
    kernel = rbf_kernel(x, median_bandwidth(x))
    n = len(reference)
    statistic = lambda a, b: mmd2(kernel, a.astype(int), b.astype(int))
    result = stats.permutation_test((np.arange(n), np.arange(n, len(x))), statistic, vectorized=False,
                                    n_resamples=permutations, alternative="greater", random_state=seed)
    return float(result.statistic), float(result.pvalue)
