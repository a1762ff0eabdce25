"""Text-generation metrics against one or more references per example, each as a bootstrappable `Statistic`.

Exact match and token F1 follow the SQuAD evaluation (normalise, then the best reference counts); ROUGE comes
from `rouge-score` (F-measure, best reference by `score_multi`); corpus BLEU and chrF from `sacrebleu`, whose
per-sentence sufficient statistics are kept so that bootstrap and paired tests recompute the corpus score
exactly as `sacrebleu.corpus_bleu` would. Every score is in percent.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np

from ftjax.metrics.bootstrap import Statistic, mean_statistic

NORMALIZE_OPTIONS = ("lower", "punct", "articles", "whitespace")
SQUAD = "lower,punct,articles,whitespace"
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.IGNORECASE)
_ASCII_PUNCT = set(string.punctuation)

References = Sequence[Sequence[str]]


def normalizer(spec: str) -> Callable[[str], str]:
    """A text normaliser from comma-separated options, applied in SQuAD's order: `lower` (case), `punct`
    (ASCII and Unicode punctuation), `articles` (English a/an/the), `whitespace` (strip and collapse).
    `none` or "" compares raw strings."""
    options = {o.strip() for o in spec.split(",") if o.strip() and o.strip() != "none"}
    unknown = options - set(NORMALIZE_OPTIONS)
    if unknown:
        raise ValueError(f"unknown normalisation {sorted(unknown)[0]!r}; choose from none, "
                         f"{', '.join(NORMALIZE_OPTIONS)}")

    def normalize(text: str) -> str:
        if "lower" in options:
            text = text.lower()
        if "punct" in options:
            text = "".join(c for c in text if c not in _ASCII_PUNCT and not unicodedata.category(c).startswith("P"))
        if "articles" in options:
            text = _ARTICLES.sub(" ", text)
        if "whitespace" in options:
            text = " ".join(text.split())
        return text

    return normalize


def _check(predictions: Sequence[str], references: References) -> None:
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} reference lists")
    if any(len(refs) == 0 for refs in references):
        raise ValueError("every prediction needs at least one reference")


def exact_match(predictions: Sequence[str], references: References, normalize: str = SQUAD) -> Statistic:
    _check(predictions, references)
    norm = normalizer(normalize)
    return mean_statistic([max(float(norm(p) == norm(r)) for r in refs) for p, refs in zip(predictions, references)])


def _f1(prediction: str, reference: str) -> float:
    p, r = prediction.split(), reference.split()
    if not p or not r:
        return float(p == r)  # SQuAD: both empty is a match, one empty is not
    common = sum((Counter(p) & Counter(r)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(p), common / len(r)
    return 2 * precision * recall / (precision + recall)


def token_f1(predictions: Sequence[str], references: References, normalize: str = SQUAD) -> Statistic:
    """Bag-of-words F1 of whitespace tokens after normalisation, best reference per example."""
    _check(predictions, references)
    norm = normalizer(normalize)
    return mean_statistic([max(_f1(norm(p), norm(r)) for r in refs) for p, refs in zip(predictions, references)])


ROUGE_TYPES = {"rouge_1": "rouge1", "rouge_2": "rouge2", "rouge_l": "rougeL"}


def rouge(predictions: Sequence[str], references: References, use_stemmer: bool = False) -> dict[str, Statistic]:
    """ROUGE-1/2/L F-measures (rouge-score's tokenizer: lowercased ASCII letters and digits)."""
    from rouge_score.rouge_scorer import RougeScorer

    _check(predictions, references)
    scorer = RougeScorer(list(ROUGE_TYPES.values()), use_stemmer=use_stemmer)
    scores = [scorer.score_multi(list(refs), p) for p, refs in zip(predictions, references)]
    return {name: mean_statistic([s[key].fmeasure for s in scores]) for name, key in ROUGE_TYPES.items()}


def _reference_streams(references: References) -> list[list[str | None]]:
    """Per-example reference lists -> sacrebleu's reference streams, None-padded for varying counts."""
    width = max(len(refs) for refs in references)
    return [[refs[j] if j < len(refs) else None for refs in references] for j in range(width)]


def sacrebleu_statistic(metric, predictions: Sequence[str], references: References) -> Statistic:
    _check(predictions, references)
    # the per-sentence statistics and their aggregation are what sacrebleu's own bootstrap and paired tests use
    items = np.asarray(metric._extract_corpus_statistics(list(predictions), _reference_streams(references)),
                       np.float64)
    return Statistic(items, lambda a: float(metric._compute_score_from_stats(a.sum(0)).score))


def bleu(predictions: Sequence[str], references: References) -> Statistic:
    """Corpus BLEU (sacrebleu defaults: 13a tokenization, exponential smoothing), multi-reference."""
    from sacrebleu.metrics import BLEU

    return sacrebleu_statistic(BLEU(), predictions, references)


def chrf(predictions: Sequence[str], references: References) -> Statistic:
    """Corpus chrF (sacrebleu defaults: character 6-grams, beta 2); the best reference per sentence."""
    from sacrebleu.metrics import CHRF

    return sacrebleu_statistic(CHRF(), predictions, references)
