"""Evaluation metrics with bootstrap confidence intervals and paired significance tests.

    from ftjax.metrics import bleu, bootstrap_ci, paired_test
    stat = bleu(predictions, references)          # references: a list of reference texts per prediction
    stat.value, bootstrap_ci(stat)                # sacrebleu's corpus BLEU and its 95% interval
    paired_test(bleu(preds_a, refs), bleu(preds_b, refs))   # {"delta", "low", "high", "p_value"}
"""

from ftjax.metrics.bootstrap import Statistic, bootstrap_ci, mean_statistic, paired_test, ratio_statistic, with_ci
from ftjax.metrics.classification import classification_statistics, confusion_matrix, encode_labels
from ftjax.metrics.suite import METRICS, default_metrics, metric_report, parse_metrics, statistics
from ftjax.metrics.text import bleu, chrf, exact_match, normalizer, rouge, token_f1

__all__ = ["METRICS", "Statistic", "bleu", "bootstrap_ci", "chrf", "classification_statistics", "confusion_matrix",
           "default_metrics", "encode_labels", "exact_match", "mean_statistic", "metric_report", "normalizer",
           "paired_test", "parse_metrics", "ratio_statistic", "rouge", "statistics", "token_f1", "with_ci"]
