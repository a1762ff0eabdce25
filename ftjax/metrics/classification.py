"""Classification metrics from a confusion matrix: accuracy, macro-F1, per-class precision/recall/F1.

Labels are indexed by a fixed class list (the label set, or the gold labels seen), so two systems scored on the
same examples share indices and can be compared pairwise; a prediction outside the list gets the extra index
`len(classes)` ("other": wrong for its gold class, a false positive for none). Macro averages run over the
classes that occur in the sample (as gold or prediction), like scikit-learn's default label set. The matrix is
built with `np.bincount`, so the 1000 bootstrap resamples of a 77-class test set take milliseconds; the tests
check every number against scikit-learn.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from ftjax.metrics.bootstrap import Statistic

OTHER = "(other)"


def class_list(gold: Sequence[str], label_set: Sequence[str] | None = None) -> list[str]:
    """The label set, or the gold labels in order of first appearance."""
    return list(label_set) if label_set else list(dict.fromkeys(gold))


def encode_labels(gold: Sequence[str], predicted: Sequence[str], classes: Sequence[str],
                  normalize: Callable[[str], str] = str.strip) -> np.ndarray:
    """[n, 2] (gold index, predicted index); a predicted text matches a class after `normalize`."""
    index = {normalize(c): i for i, c in enumerate(classes)}
    if len(index) != len(classes):
        raise ValueError("two labels become the same text after normalisation; use a gentler eval.normalize")
    missing = [g for g in gold if normalize(g) not in index]
    if missing:
        raise ValueError(f"gold label {missing[0]!r} is not in the label set")
    return np.array([[index[normalize(g)], index.get(normalize(p), len(classes))] for g, p in zip(gold, predicted)],
                    np.int64).reshape(-1, 2)


def confusion_matrix(items: np.ndarray, n_classes: int) -> np.ndarray:
    """[n_classes, n_classes + 1] counts: rows gold, columns predicted, the last column 'other'."""
    flat = items[:, 0] * (n_classes + 1) + items[:, 1]
    return np.bincount(flat, minlength=n_classes * (n_classes + 1)).reshape(n_classes, n_classes + 1)


def _safe_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.divide(a, b, out=np.zeros(a.shape, np.float64), where=b > 0)


def per_class(cm: np.ndarray) -> dict[str, np.ndarray]:
    """precision, recall, f1 (0 where undefined, as scikit-learn's zero_division=0) and support per class."""
    tp = np.diag(cm[:, :-1]).astype(np.float64)
    predicted, support = cm[:, :-1].sum(0), cm.sum(1)
    precision, recall = _safe_div(tp, predicted), _safe_div(tp, support)
    return {"precision": precision, "recall": recall,
            "f1": _safe_div(2 * precision * recall, precision + recall), "support": support,
            "present": (support + predicted) > 0}


def summary(cm: np.ndarray) -> np.ndarray:
    """[accuracy, macro-F1, precision per class..., recall per class..., F1 per class...] in percent."""
    c = per_class(cm)
    accuracy = np.trace(cm[:, :-1]) / max(cm.sum(), 1)
    macro = c["f1"][c["present"]].mean() if c["present"].any() else 0.0
    return 100 * np.concatenate([[accuracy, macro], c["precision"], c["recall"], c["f1"]])


def classification_statistics(items: np.ndarray, n_classes: int) -> dict[str, Statistic]:
    """accuracy and macro_f1 (scalars) and per_class (the `summary` vector) over (gold, predicted) indices."""
    vector = lambda a: summary(confusion_matrix(a, n_classes))
    return {"accuracy": Statistic(items, lambda a: float(vector(a)[0])),
            "macro_f1": Statistic(items, lambda a: float(vector(a)[1])),
            "per_class": Statistic(items, vector)}


def per_class_report(items: np.ndarray, classes: Sequence[str], low: np.ndarray | None = None,
                     high: np.ndarray | None = None) -> dict[str, dict]:
    """{class: {precision, recall, f1: {value[, low, high]}, support}} from the `per_class` statistic's
    value and (optionally) its bootstrap bounds."""
    n = len(classes)
    values = summary(confusion_matrix(items, n))
    support = confusion_matrix(items, n).sum(1)
    out = {}
    for i, name in enumerate(classes):
        entry: dict = {"support": int(support[i])}
        for j, key in enumerate(("precision", "recall", "f1")):
            k = 2 + j * n + i
            entry[key] = {"value": float(values[k])}
            if low is not None:
                entry[key] |= {"low": float(low[k]), "high": float(high[k])}
        out[name] = entry
    return out
