"""Metrics by name over prediction rows, with bootstrap intervals: what `ftjax eval`, the trainer's
validation hook and `ftjax compare` all compute, from the same rows.

A prediction row holds `prediction` (text), `references` (texts), and where they apply `label` (the gold class),
`nll`/`tokens` (teacher-forced scores of the references, for perplexity) and `prompt` (a data-to-text row's
meaning representation, for the slot error rate).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

from ftjax.metrics import classification as C, e2e as E, text as T
from ftjax.metrics.bootstrap import Statistic, bootstrap_ci, ratio_statistic, with_ci
from ftjax.metrics.regression import REGRESSION_METRICS, regression_statistics
from ftjax.metrics.slots import slot_error_rate

log = logging.getLogger("ftjax.metrics")
TEXT_METRICS = ("exact_match", "token_f1", "rouge_1", "rouge_2", "rouge_l", "bleu", "chrf")
CLASSIFICATION_METRICS = ("accuracy", "macro_f1")
METRICS = (*TEXT_METRICS, *E.E2E_METRICS, *CLASSIFICATION_METRICS, *REGRESSION_METRICS, "perplexity",
           "slot_error_rate")
LOWER_IS_BETTER = frozenset({"perplexity", "slot_error_rate", "mse", "mae"})


def parse_metrics(spec: str | Sequence[str], task: str | None = None) -> list[str]:
    """'rouge_l, exact_match' -> names, checked; classification metrics only for classification tasks."""
    names = [s.strip() for s in spec.split(",") if s.strip()] if isinstance(spec, str) else list(spec)
    for name in names:
        if name not in METRICS:
            raise ValueError(f"unknown metric {name!r}; choose from {', '.join(METRICS)}")
        if name in CLASSIFICATION_METRICS and task not in (None, "classification"):
            raise ValueError(f"metric {name!r} needs classification rows (text + label); this split is {task}")
        if name in REGRESSION_METRICS and task not in (None, "regression"):
            raise ValueError(f"metric {name!r} needs regression rows (text + value); this split is {task}")
        if name == "slot_error_rate" and task not in (None, "data_to_text"):
            raise ValueError(f"metric {name!r} needs data-to-text rows (an E2E meaning representation); "
                             f"this split is {task}")
    return names


def default_metrics(task: str) -> list[str]:
    if task == "classification":
        return [*CLASSIFICATION_METRICS, "perplexity"]
    if task == "regression":
        return list(REGRESSION_METRICS)
    if task != "data_to_text":
        return [*TEXT_METRICS, "perplexity"]
    e2e = list(E.E2E_METRICS)
    why = E.available()
    if why:
        log.warning("METEOR, ROUGE-L and CIDEr as the E2E challenge scores them are skipped: %s", why)
        e2e = [m for m in e2e if m not in E.COCO]
    return [*TEXT_METRICS, *e2e, "perplexity", "slot_error_rate"]


def statistics(rows: Sequence[dict], names: Sequence[str], normalize: str = T.SQUAD,
               classes: Sequence[str] | None = None) -> dict[str, Statistic]:
    """Statistic per metric name (plus `per_class` when classification metrics are asked for)."""
    predictions = [r["prediction"] for r in rows]
    references = [r["references"] for r in rows]
    out: dict[str, Statistic] = {}
    for name in names:
        if name == "exact_match":
            out[name] = T.exact_match(predictions, references, normalize)
        elif name == "token_f1":
            out[name] = T.token_f1(predictions, references, normalize)
        elif name in T.ROUGE_TYPES and name not in out:
            out |= {k: v for k, v in T.rouge(predictions, references).items() if k in names}
        elif name == "bleu":
            out[name] = T.bleu(predictions, references)
        elif name == "chrf":
            out[name] = T.chrf(predictions, references)
        elif name == "e2e_bleu":
            out[name] = E.e2e_bleu(predictions, references)
        elif name == "nist":
            out[name] = E.nist(predictions, references)
        elif name in E.COCO and name not in out:  # one PTB tokenization for the three
            out |= E.coco_statistics(predictions, references, [n for n in names if n in E.COCO])
        elif name == "perplexity":
            if any("nll" not in r for r in rows):
                raise ValueError("perplexity needs teacher-forced scores (`nll`, `tokens`) in every row")
            out[name] = ratio_statistic([r["nll"] for r in rows], [r["tokens"] for r in rows],
                                        lambda x: math.exp(min(x, 50.0)))
        elif name == "slot_error_rate":  # the prompt of a data-to-text row is its meaning representation
            out[name] = slot_error_rate([r["prompt"] for r in rows], predictions)
        elif name in REGRESSION_METRICS and name not in out:
            out |= {k: v for k, v in regression_statistics(predictions, references).items() if k in names}
        elif name in CLASSIFICATION_METRICS and "per_class" not in out:
            items = C.encode_labels([r["label"] for r in rows], predictions, classes, T.normalizer(normalize))
            out |= C.classification_statistics(items, len(classes))
    return {k: out[k] for k in (*names, "per_class") if k in out}


def metric_report(stats: dict[str, Statistic], classes: Sequence[str] | None = None, n_resamples: int = 1000,
                  confidence: float = 0.95, seed: int = 0) -> dict:
    """{"metrics": {name: {value, low, high}}}, plus for classification "classification": {labels, per_class,
    confusion_matrix}, from `statistics(...)`; n_resamples 0 gives values only."""
    report: dict = {"metrics": {k: with_ci(v, n_resamples, confidence, seed) for k, v in stats.items()
                                if k != "per_class"}}
    if "per_class" in stats:
        items = stats["per_class"].items
        low, high = bootstrap_ci(stats["per_class"], n_resamples, confidence, seed) if n_resamples else (None, None)
        report["classification"] = {"labels": list(classes), "other_column": C.OTHER,
                                    "per_class": C.per_class_report(items, classes, low, high),
                                    "confusion_matrix": C.confusion_matrix(items, len(classes)).tolist()}
    return report
