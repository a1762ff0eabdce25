"""Regression metrics over (predicted, gold) values: mean squared and absolute error, Pearson and Spearman
correlation. Each keeps the per-example pairs, so bootstrap intervals and paired tests resample examples.

A prediction that does not read as a number (a generated one) counts as missing: the errors and correlations
are over the rows that have one."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ftjax.metrics.bootstrap import Statistic

REGRESSION_METRICS = ("mse", "mae", "pearson", "spearman")


def _number(text: str) -> float:
    try:
        value = float(str(text).strip())
    except ValueError:
        return math.nan
    return value if math.isfinite(value) else math.nan


def regression_statistics(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> dict[str, Statistic]:
    """Statistics of REGRESSION_METRICS; the gold value of an item is the mean of its references."""
    from scipy.stats import spearmanr

    pred = np.array([_number(p) for p in predictions])
    gold = np.array([np.mean([float(r) for r in refs]) for refs in references])
    items = np.stack([pred, gold], 1)

    def ok(a: np.ndarray) -> np.ndarray:
        return a[np.isfinite(a[:, 0])]

    def correlation(a: np.ndarray, rank: bool) -> float:
        a = ok(a)
        if len(a) < 2 or np.ptp(a[:, 0]) == 0 or np.ptp(a[:, 1]) == 0:
            return math.nan  # undefined for constant predictions or golds
        return float(spearmanr(a[:, 0], a[:, 1]).statistic if rank else np.corrcoef(a[:, 0], a[:, 1])[0, 1])

    return {"mse": Statistic(items, lambda a: float(np.mean(np.square(np.diff(ok(a), axis=1))))),
            "mae": Statistic(items, lambda a: float(np.mean(np.abs(np.diff(ok(a), axis=1))))),
            "pearson": Statistic(items, lambda a: correlation(a, rank=False)),
            "spearman": Statistic(items, lambda a: correlation(a, rank=True))}
