"""Validation filters for synthetic rows, run in this order; each reports how many rows it removed and why.

    format          the row has its format's fields as non-empty text, and a classification label is a known one
    quality         ftjax.data.quality.Filters (length, repeated characters, non-text) plus a word-count range
    test_leak       the input equals or nearly equals a test row's input (MinHash + exact Jaccard): never kept
    existing        the input equals or nearly equals an input of the real data it was made from
    duplicate       the input equals or nearly equals an earlier synthetic row's input (the first is kept)
    label           label consistency: a classifier (TF-IDF + logistic regression trained on the real rows, or a
                    fine-tuned run's classification head) gives the intended label a probability below the
                    threshold

Only the input is compared for duplicates: a paraphrase keeps its seed's label, so the label says nothing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np

from ftjax.data.dedup import NearDuplicateIndex
from ftjax.data.quality import Filters, normalize
from ftjax.data.sources import where

FILTERS = ("format", "quality", "test_leak", "existing", "duplicate", "label")
FIELDS = {"classification": ("text", "label"), "prompt_completion": ("prompt", "completion")}


@dataclasses.dataclass(frozen=True)
class Checks:
    """What validate() applies; `enabled` names the filters that run (all by default)."""

    labels: tuple[str, ...] = ()  # the known label set (classification)
    quality: Filters = Filters()
    min_words: int = 1
    max_words: int = 0  # 0 = no limit
    near_threshold: float = 0.8
    label_threshold: float = 0.3
    enabled: tuple[str, ...] = FILTERS


def input_of(row: dict, fmt: str) -> str:
    return row[FIELDS[fmt][0]]


def target_of(row: dict, fmt: str) -> str:
    return str(row[FIELDS[fmt][1]])


def validate(rows: Sequence[dict], fmt: str, checks: Checks, existing: Sequence[dict] = (),
             test: Sequence[dict] = (), label_probability: Callable[[list[str], list[str]], np.ndarray] | None = None
             ) -> tuple[list[dict], list[dict], dict]:
    """(kept rows, removed rows each with `removed_by` and `why`, report {filter: removed count}).
    `label_probability(texts, labels)` gives the probability of each intended label (the `label` filter)."""
    unknown = set(checks.enabled) - set(FILTERS)
    if unknown:
        raise ValueError(f"unknown filter(s) {sorted(unknown)}; choose from: {', '.join(FILTERS)}")
    removed: list[dict] = []
    report = {name: 0 for name in checks.enabled}
    alive = list(rows)

    def drop(name: str, why: dict[int, str]) -> None:
        nonlocal alive
        for i in sorted(why):
            removed.append(dict(alive[i], removed_by=name, why=why[i]))
        report[name] = len(why)
        alive = [r for i, r in enumerate(alive) if i not in why]

    if "format" in checks.enabled:
        drop("format", {i: w for i, r in enumerate(alive) if (w := _format_problem(r, fmt, checks.labels))})
    if "quality" in checks.enabled:
        drop("quality", {i: w for i, r in enumerate(alive) if (w := _quality_problem(r, fmt, checks))})
    for name, reference in (("test_leak", test), ("existing", existing)):
        if name in checks.enabled and reference:
            drop(name, _matches(alive, reference, fmt, checks.near_threshold, name))
    if "duplicate" in checks.enabled:
        drop("duplicate", _self_duplicates(alive, fmt, checks.near_threshold))
    if "label" in checks.enabled and fmt == "classification" and label_probability is not None and alive:
        p = label_probability([r["text"] for r in alive], [str(r["label"]) for r in alive])
        drop("label", {i: f"the classifier gives {alive[i]['label']!r} p={p[i]:.2f} < {checks.label_threshold}"
                       for i in range(len(alive)) if p[i] < checks.label_threshold})
    return alive, removed, report


def _format_problem(row: dict, fmt: str, labels: Sequence[str]) -> str | None:
    for name in FIELDS[fmt]:
        if not isinstance(row.get(name), str) or not row[name].strip():
            return f"no {name} text"
    if fmt == "classification" and labels and row["label"] not in labels:
        return f"label {row['label']!r} is not in the label set"
    return None


def _quality_problem(row: dict, fmt: str, checks: Checks) -> str | None:
    text = input_of(row, fmt)
    problem = checks.quality.problem(text, target_of(row, fmt))
    if problem:
        return problem
    words = len(text.split())
    if words < checks.min_words or (checks.max_words and words > checks.max_words):
        return f"{words} words, outside [{checks.min_words}, {checks.max_words or 'any'}]"
    return None


def _matches(rows: Sequence[dict], reference: Sequence[dict], fmt: str, threshold: float, name: str
             ) -> dict[int, str]:
    """Rows whose input equals (normalised) or nearly equals a reference row's input -> why."""
    ref_fmt = lambda r: "prompt_completion" if "prompt" in r else "classification"
    ref_texts = [normalize(input_of(r, ref_fmt(r))) for r in reference]
    exact = {t: i for i, t in enumerate(ref_texts)}
    index = NearDuplicateIndex(threshold)
    for i, sig in enumerate(index.signatures([(t,) for t in ref_texts])):
        index.add(i, sig)
    what = "a test row" if name == "test_leak" else "a real row"
    why = {}
    texts = [normalize(input_of(r, fmt)) for r in rows]
    for i, (text, sig) in enumerate(zip(texts, index.signatures([(t,) for t in texts]))):
        if text in exact:
            why[i] = f"equals {what} ({where(reference[exact[text]])})"
        elif (hit := index.match(sig)) is not None:
            why[i] = f"near duplicate of {what} ({where(reference[hit[0]])}, similarity {hit[1]:.2f})"
    return why


def _self_duplicates(rows: Sequence[dict], fmt: str, threshold: float) -> dict[int, str]:
    index = NearDuplicateIndex(threshold)
    seen: dict[str, int] = {}
    why = {}
    texts = [normalize(input_of(r, fmt)) for r in rows]
    for i, (text, sig) in enumerate(zip(texts, index.signatures([(t,) for t in texts]))):
        if text in seen:
            why[i] = f"equals synthetic row {seen[text] + 1}"
            continue
        hit = index.match(sig)
        if hit is not None:
            why[i] = f"near duplicate of synthetic row {hit[0] + 1} (similarity {hit[1]:.2f})"
            continue
        seen[text] = i
        index.add(i, sig)
    return why


def tfidf_label_probability(real: Sequence[dict]) -> Callable[[list[str], list[str]], np.ndarray]:
    """A TF-IDF (word 1-2 grams and character 2-5 grams) + logistic regression classifier fitted on the real
    classification rows; returns p(intended label | text). Needs scikit-learn (the `augment` extra)."""
    try:
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline, make_union
        from sklearn.feature_extraction.text import TfidfVectorizer
    except ImportError:
        raise ValueError("validate.label=tfidf needs scikit-learn: pip install 'ftjax[augment]' (or use "
                         "validate.label=model with a fine-tuned run)") from None
    features = make_union(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True),
                          TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True))
    classifier = make_pipeline(features, LogisticRegression(C=10.0, max_iter=2000))
    classifier.fit([r["text"] for r in real], [str(r["label"]) for r in real])
    column = {label: i for i, label in enumerate(classifier.classes_)}

    def probability(texts: list[str], labels: list[str]) -> np.ndarray:
        p = classifier.predict_proba(texts)
        return np.array([p[i, column[label]] if label in column else 0.0 for i, label in enumerate(labels)])

    return probability


def head_label_probability(view) -> Callable[[list[str], list[str]], np.ndarray]:
    """p(intended label | text) from a loaded run's classification head (a ftjax.monitor.model_view.ModelView)."""
    from ftjax.models.heads import classify, head_name, head_type

    if head_type(view.config) != "classification":
        raise ValueError("validate.label=model needs a run with a classification head (head.type=classification)")
    head = view.model.heads[head_name(view.config)]

    def probability(texts: list[str], labels: list[str]) -> np.ndarray:
        logits = classify(view.model, view.prompts(texts), view.batch_size, view.pad, head_name(view.config))
        z = logits - logits.max(-1, keepdims=True)
        p = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
        column = {label: i for i, label in enumerate(head.labels)}
        return np.array([p[i, column[label]] if label in column else 0.0 for i, label in enumerate(labels)])

    return probability
