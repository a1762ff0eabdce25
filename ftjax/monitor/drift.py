"""Input drift: one current sample (a day's or week's production inputs) against the reference (the training
inputs), as a list of checks, each a statistic, its threshold and a verdict.

    length_psi      PSI of the input length in words, over ten reference-quantile bins (KS p-value beside it)
    vocab_js        Jensen-Shannon distance of the word distributions
    oov_rate        share of current words the reference never uses
    label_psi       PSI of the model's predicted labels (chi-squared p-value beside it)      [with a model]
    embedding_mmd   squared MMD of mean-pooled final hidden states, permutation p-value      [with a model]

A threshold is a number or `auto`: the `monitor.quantile` of the statistic between the reference and
same-sized samples of the reference itself (`stats.null_threshold`), so "alarm" means "more different than
sampling noise at these sizes would make it". The embedding check alarms when its p-value is below
`monitor.alpha`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import ml_collections
import numpy as np
from scipy import stats as scipy_stats

from ftjax.monitor import stats

TEXT_CHECKS = ("length_psi", "vocab_js", "oov_rate")
MODEL_CHECKS = ("label_psi", "embedding_mmd")


def default_config() -> ml_collections.ConfigDict:
    """The `monitor` block: thresholds (a number, or `auto`: calibrated on the reference), the calibration's
    rounds and quantile, the embedding test's level, permutations and sample cap, and the seed."""
    return ml_collections.ConfigDict(dict(
        length_psi="auto", vocab_js="auto", oov_rate="auto", label_psi="auto", alpha=0.01, quantile=0.99,
        rounds=100, bins=10, permutations=500, max_embed_rows=500, seed=0))


def threshold_of(block: ml_collections.ConfigDict, name: str) -> float | None:
    """The number `monitor.<name>` sets, or None for `auto`; anything else is a one-line error."""
    text = str(block[name]).strip()
    if text == "auto":
        return None
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"monitor.{name}={text!r}: give a number or auto") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"monitor.{name}={text!r}: must be a non-negative number")
    return value


def check(block: ml_collections.ConfigDict) -> None:
    for name in (*TEXT_CHECKS, "label_psi"):
        threshold_of(block, name)
    if not 0 < block.alpha < 1 or not 0.5 <= block.quantile < 1:
        raise ValueError(f"monitor.alpha={block.alpha} must be in (0, 1), monitor.quantile={block.quantile} in "
                         "[0.5, 1)")
    for name in ("rounds", "bins", "permutations", "max_embed_rows"):
        if block[name] < 2:
            raise ValueError(f"monitor.{name}={block[name]}: must be at least 2")


class Reference:
    """The reference sample, with what every comparison needs from it computed once: words, lengths, and (given
    a model view) predicted labels and embeddings of at most `max_embed_rows` rows."""

    def __init__(self, texts: Sequence[str], block: ml_collections.ConfigDict, view=None,
                 inputs: Sequence | None = None):
        if len(texts) < 4:
            raise ValueError(f"the reference has {len(texts)} rows; drift needs at least 4")
        self.block, self.view = block, view
        self.words = [stats.words(t) for t in texts]
        self.lengths = [len(w) for w in self.words]
        self.labels = self.embeddings = None
        if view is not None:
            inputs = list(texts if inputs is None else inputs)
            if view.predicts_labels:
                self.labels = view.predict(inputs)
            self.embeddings = view.embed(subsample(inputs, block.max_embed_rows, block.seed))
        self._thresholds: dict[tuple[str, int], float] = {}

    def threshold(self, name: str, statistic: Callable, sample: Sequence, size: int) -> float:
        fixed = threshold_of(self.block, name)
        if fixed is not None:
            return fixed
        if (name, size) not in self._thresholds:
            self._thresholds[name, size] = stats.null_threshold(statistic, sample, size, rounds=self.block.rounds,
                                                                quantile=self.block.quantile, seed=self.block.seed)
        return self._thresholds[name, size]


def subsample(items: Sequence, limit: int, seed: int) -> list:
    if len(items) <= limit:
        return list(items)
    keep = np.sort(np.random.default_rng(seed).choice(len(items), limit, replace=False))
    return [items[i] for i in keep]


def _verdict(name: str, value: float, threshold: float, **extra) -> dict:
    return {"check": name, "value": value, "threshold": threshold, "alarm": bool(value > threshold), **extra}


def compare(ref: Reference, texts: Sequence[str], inputs: Sequence | None = None) -> dict:
    """{"rows", "checks": [...], "alarm": any check's alarm} for one current sample."""
    if not texts:
        raise ValueError("the current sample has no rows")
    b = ref.block
    cur_words = [stats.words(t) for t in texts]
    cur_lengths = [len(w) for w in cur_words]
    n = len(texts)
    length = lambda a, c: stats.length_psi(a, c, b.bins)
    checks = [
        _verdict("length_psi", length(ref.lengths, cur_lengths),
                 ref.threshold("length_psi", length, ref.lengths, n),
                 ks_p=float(scipy_stats.ks_2samp(ref.lengths, cur_lengths).pvalue),
                 mean=float(np.mean(cur_lengths)), reference_mean=float(np.mean(ref.lengths))),
        _verdict("vocab_js", stats.vocab_js(ref.words, cur_words),
                 ref.threshold("vocab_js", stats.vocab_js, ref.words, n)),
        _verdict("oov_rate", stats.oov_rate(ref.words, cur_words),
                 ref.threshold("oov_rate", stats.oov_rate, ref.words, n)),
    ]
    if ref.view is not None:
        inputs = list(texts if inputs is None else inputs)
        if ref.labels is not None:
            predicted = ref.view.predict(inputs)
            shares = {k: v / n for k, v in sorted(zip(*np.unique(predicted, return_counts=True)),
                                                     key=lambda kv: -kv[1])[:10]}
            checks.append(_verdict("label_psi", stats.label_psi(ref.labels, predicted),
                                   ref.threshold("label_psi", stats.label_psi, ref.labels, n),
                                   chi2_p=stats.label_chi2_p(ref.labels, predicted),
                                   top_labels={str(k): float(v) for k, v in shares.items()}))
        current = ref.view.embed(subsample(inputs, b.max_embed_rows, b.seed))
        value, p = stats.mmd_test(ref.embeddings, current, permutations=b.permutations, seed=b.seed)
        checks.append({"check": "embedding_mmd", "value": value, "p_value": p, "threshold": b.alpha,
                       "alarm": bool(p < b.alpha)})
    return {"rows": n, "checks": checks, "alarm": any(c["alarm"] for c in checks)}
