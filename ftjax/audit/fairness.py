"""Per-group task metrics and fairness metrics of a classifier's predictions, with bootstrap intervals.

Fairness metrics are binary; a multi-class task is audited one class against the rest (or only the class named
`positive`): for each class, the demographic parity difference (largest gap between groups in how often that
class is predicted), the disparate impact ratio (smallest over largest of those rates; the four-fifths rule asks
>= 0.8) and the equalized odds difference (the larger of the gaps in true and false positive rates). The
summary is the worst class. Point values come from fairlearn. Its calls cost ~30 ms each, so a bootstrap
(1,000 resamples x classes x metrics) through it would take hours: the intervals use the same definitions in
numpy over the resampled rows (tests check both agree with fairlearn). Resampling is by cluster when given (a
counterfactual set keeps an item's versions together).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

FOUR_FIFTHS = 0.8


def rates(y_true: np.ndarray, y_pred: np.ndarray, group: np.ndarray, n_groups: int, classes: np.ndarray
          ) -> dict[str, np.ndarray]:
    """[groups, classes] selection rate, true positive rate and false positive rate (NaN where undefined),
    one class against the rest; integer-coded inputs."""
    out = {}
    one_hot_g = np.eye(n_groups, dtype=np.float64)[group]  # [n, G]
    pred_c = (y_pred[:, None] == classes[None]).astype(np.float64)  # [n, K]
    true_c = (y_true[:, None] == classes[None]).astype(np.float64)
    size = one_hot_g.sum(0)[:, None]
    pos = one_hot_g.T @ true_c
    neg = size - pos
    with np.errstate(invalid="ignore", divide="ignore"):
        out["selection"] = (one_hot_g.T @ pred_c) / size
        out["tpr"] = (one_hot_g.T @ (pred_c * true_c)) / pos
        out["fpr"] = (one_hot_g.T @ (pred_c * (1 - true_c))) / neg
    out["accuracy"] = np.array([(y_true[group == g] == y_pred[group == g]).mean() if (group == g).any()
                                else np.nan for g in range(n_groups)])
    return out


def per_class(r: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """[classes] demographic parity difference and ratio and equalized odds difference from `rates`."""
    sel = r["selection"]
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(sel.max(0) > 0, sel.min(0) / sel.max(0), np.nan)
    eo = np.maximum(r["tpr"].max(0) - r["tpr"].min(0), r["fpr"].max(0) - r["fpr"].min(0))
    return {"dp_difference": sel.max(0) - sel.min(0), "disparate_impact": ratio, "eo_difference": eo}


def _summary(values: dict[str, np.ndarray], accuracy: np.ndarray) -> dict[str, float]:
    def worst(a: np.ndarray, low: bool = False) -> float:
        a = a[~np.isnan(a)]
        return float(a.min() if low else a.max()) if a.size else float("nan")

    acc = accuracy[~np.isnan(accuracy)]
    return {"accuracy_difference": float(acc.max() - acc.min()) if acc.size else float("nan"),
            "dp_difference": worst(values["dp_difference"]),
            "disparate_impact": worst(values["disparate_impact"], low=True),
            "eo_difference": worst(values["eo_difference"])}


def _fairlearn_per_class(y_true: np.ndarray, y_pred: np.ndarray, groups: np.ndarray, classes: np.ndarray,
                         r: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The per-class metrics through fairlearn (the reported values); NaN where a class leaves them undefined."""
    from fairlearn.metrics import demographic_parity_difference, demographic_parity_ratio, equalized_odds_difference

    out = {k: np.full(len(classes), np.nan) for k in ("dp_difference", "disparate_impact", "eo_difference")}
    defined_eo = ~np.isnan(r["tpr"]).any(0) & ~np.isnan(r["fpr"]).any(0)
    for k, c in enumerate(classes):
        t, p = (y_true == c).astype(int), (y_pred == c).astype(int)
        out["dp_difference"][k] = demographic_parity_difference(t, p, sensitive_features=groups)
        if r["selection"][:, k].max() > 0:
            out["disparate_impact"][k] = demographic_parity_ratio(t, p, sensitive_features=groups)
        if defined_eo[k]:
            out["eo_difference"][k] = equalized_odds_difference(t, p, sensitive_features=groups)
    return out


def group_fairness(y_true: Sequence[str], y_pred: Sequence[str], groups: Sequence[str], *,
                   positive: str | None = None, clusters: Sequence[int] | None = None, n_resamples: int = 1000,
                   seed: int = 0) -> dict:
    """Per-group accuracy and the fairness summary (worst class) with 95% bootstrap intervals, and the worst
    class of each metric. Needs two or more groups."""
    try:
        from fairlearn.metrics import MetricFrame
        from sklearn.metrics import accuracy_score
    except ImportError:
        raise ValueError("fairness metrics need fairlearn: pip install 'ftjax[fairness]'") from None

    names = sorted(set(groups))
    if len(names) < 2:
        raise ValueError(f"fairness metrics compare groups; got {len(names)} group(s): {names}")
    labels = sorted(set(y_true) | set(y_pred))
    code = {label: i for i, label in enumerate(labels)}
    yt = np.array([code[y] for y in y_true])
    yp = np.array([code[y] for y in y_pred])
    g = np.array([names.index(x) for x in groups])
    group_names = np.array(groups)
    if positive is not None:
        if positive not in code:
            raise ValueError(f"positive label {positive!r} is neither a gold nor a predicted label here")
        classes = np.array([code[positive]])
    else:
        classes = np.arange(len(labels))
    r = rates(yt, yp, g, len(names), classes)
    values = _fairlearn_per_class(yt, yp, group_names, classes, r)
    frame = MetricFrame(metrics=accuracy_score, y_true=yt, y_pred=yp, sensitive_features=group_names)
    accuracy = np.array([float(frame.by_group[n]) for n in names])
    point = _summary(values, accuracy)
    samples = _bootstrap(yt, yp, g, len(names), classes, clusters, n_resamples, seed)
    out = {"groups": {}, "summary": {}, "worst_class": {}, "classes": len(classes)}
    for i, n in enumerate(names):
        out["groups"][n] = {"rows": int((g == i).sum()), "accuracy": _ci(100 * accuracy[i], 100 * samples["acc"][:, i])}
    for k, v in point.items():
        scale = 100.0 if k == "accuracy_difference" else 1.0
        out["summary"][k] = _ci(scale * v, scale * samples[k])
    for k in ("dp_difference", "disparate_impact", "eo_difference"):
        a = values[k]
        if np.isnan(a).all():
            continue
        i = int(np.nanargmin(a) if k == "disparate_impact" else np.nanargmax(a))
        out["worst_class"][k] = labels[classes[i]]
    di = point["disparate_impact"]
    out["four_fifths"] = None if np.isnan(di) else bool(di >= FOUR_FIFTHS)
    return out


def _bootstrap(yt, yp, g, n_groups, classes, clusters, n_resamples, seed) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    owner = np.arange(len(yt)) if clusters is None else np.asarray(clusters)
    ids, inverse = np.unique(owner, return_inverse=True)
    members = [np.flatnonzero(inverse == i) for i in range(len(ids))]
    keys = ("accuracy_difference", "dp_difference", "disparate_impact", "eo_difference")
    out = {k: [] for k in keys} | {"acc": []}
    for _ in range(n_resamples):
        idx = np.concatenate([members[i] for i in rng.integers(0, len(ids), len(ids))])
        r = rates(yt[idx], yp[idx], g[idx], n_groups, classes)
        s = _summary(per_class(r), r["accuracy"])
        for k in keys:
            out[k].append(s[k])
        out["acc"].append(r["accuracy"])
    return {k: np.array(v, dtype=np.float64).reshape(n_resamples, -1) if k == "acc" else np.array(v, np.float64)
            for k, v in out.items()}


def _ci(value: float, samples: np.ndarray) -> dict[str, float]:
    out = {"value": float(value)}
    samples = samples[~np.isnan(samples)]
    if samples.size:
        out["low"], out["high"] = (float(x) for x in np.quantile(samples, [0.025, 0.975]))
    return out


def mean_ci(values: Sequence[float], clusters: Sequence[int] | None = None, n_resamples: int = 1000,
            seed: int = 0, scale: float = 100.0) -> dict[str, float]:
    """The mean of per-row values (times `scale`) with a (cluster) bootstrap interval."""
    v = np.asarray(values, np.float64)
    if v.size == 0:
        return {"value": float("nan")}
    owner = np.arange(len(v)) if clusters is None else np.asarray(clusters)
    ids, inverse = np.unique(owner, return_inverse=True)
    sums, counts = np.bincount(inverse, v), np.bincount(inverse)
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(ids), (n_resamples, len(ids)))
    samples = scale * sums[pick].sum(1) / counts[pick].sum(1)
    return _ci(scale * float(v.mean()), samples) if n_resamples else {"value": scale * float(v.mean())}
