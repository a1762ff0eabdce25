"""The `data` block of an experiment config: where the splits are and how rows become token ids.

    train, validation, test   row sources (ftjax.data.sources: a path, hf:NAME, tfds:NAME); '' = none;
                              validation may be `holdout:F`: a fraction F of the training rows, stratified by
                              label, near-identical inputs kept together, the same for every seed
    per_label                 keep at most this many training rows per label (0 = all): few-shot regimes
    label_noise               replace this fraction of the training labels by another label, drawn at random
                              (the same rows and labels for every seed): the data-quality ablation
    format                    auto | prompt_completion | chat | classification | data_to_text | regression
    columns                   field mapping ours=theirs,... (e.g. prompt=mr,completion=ref)
    labels                    comma-separated label set of classification rows ('' = from the rows)
    max_length                tokens per example (longer ones are truncated)
    pack                      pack several examples per training row (segment ids keep them apart)
    groups, group_attribute   a group lexicon (ftjax.data.groups; '' = the starter set) and one of its attributes,
    group_balance             for the bias mitigation below
                              none | reweight (every mentioned group gets the same total loss weight) |
                              resample (rows of less mentioned groups repeated up to the most mentioned one)
    synthetic_weight          loss weight of training rows with `source: synthetic` (ftjax augment's rows); a
                              row's own `weight` field multiplies it (1 = every row counts the same)
"""

from __future__ import annotations

import ml_collections

from ftjax.config import at_least, one_of
from ftjax.data.formats import FORMATS

HOLDOUT = "holdout:"


def default_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(dict(train="", validation="", test="", format="auto", columns="", labels="",
                                          max_length=256, pack=False, per_label=0, label_noise=0.0,
                                          synthetic_weight=1.0, groups="", group_attribute="",
                                          group_balance="none"))


def check(data: ml_collections.ConfigDict, need_train: bool = True) -> None:
    """One-line errors for a bad `data` block, before any file is read."""
    one_of(data, "data", "format", ("auto", *FORMATS))
    at_least(data, "data", 2, "max_length")
    at_least(data, "data", 0, "per_label", "label_noise", "synthetic_weight")
    if "group_balance" in data:
        one_of(data, "data", "group_balance", ("none", "reweight", "resample"))
    if data.get("group_balance", "none") != "none" and not data.get("group_attribute"):
        raise ValueError(f"data.group_balance={data.group_balance} needs data.group_attribute (e.g. gender)")
    if data.label_noise >= 1:
        raise ValueError(f"data.label_noise={data.label_noise}: a fraction of the training labels, below 1")
    if data.validation.startswith(HOLDOUT):
        fraction = data.validation[len(HOLDOUT):]
        if not (fraction.replace(".", "", 1).isdigit() and 0 < float(fraction) < 1):
            raise ValueError(f"data.validation={data.validation!r}: holdout takes a fraction, e.g. holdout:0.1")
    if need_train and not str(data.train).strip():
        raise ValueError("data.train is empty: set --config.data.train to a JSONL/CSV/Parquet file or hf:/tfds: source")


def rows_of(data: ml_collections.ConfigDict, split: str) -> list[dict]:
    """The rows of split `train`, `validation` or `test` as the block defines them (holdout, per_label)."""
    from ftjax.data.sources import load_rows, parse_columns

    spec = data.get(split, "")
    columns = parse_columns(data.columns)
    if split == "test" or (split == "validation" and not spec.startswith(HOLDOUT)):
        return load_rows(spec, columns) if spec else []
    rows = load_rows(data.train, columns)
    if data.validation.startswith(HOLDOUT):
        from ftjax.data.split import split_rows

        fraction = float(data.validation[len(HOLDOUT):])
        parts = split_rows(rows, (1 - fraction, fraction), seed=0, fmt=data.format)
        if split == "validation":
            return parts["validation"]
        rows = parts["train"]
    if data.get("per_label", 0):
        from ftjax.data.formats import label_of, resolve_format

        kept, seen = [], {}
        for r in rows:
            label = label_of(r, resolve_format(r, data.format))
            seen[label] = seen.get(label, 0) + 1
            if seen[label] <= data.per_label:
                kept.append(r)
        rows = kept
    if data.get("label_noise", 0.0):
        rows = with_label_noise(rows, data.label_noise, label_set(data))
    return rows


def with_label_noise(rows: list[dict], fraction: float, labels: list[str] | None) -> list[dict]:
    """Copies of `rows` with round(fraction * n) labels, at rows drawn with seed 0, replaced by a different
    label drawn uniformly from the label set (or the labels the rows have)."""
    import numpy as np

    from ftjax.data.formats import label_counts

    labels = labels or sorted(label_counts(rows))
    if len(labels) < 2 or any("label" not in r for r in rows):
        raise ValueError("data.label_noise needs classification rows (text + label) with at least two labels")
    rng = np.random.default_rng(0)
    noisy = [dict(r) for r in rows]
    for i in rng.choice(len(rows), size=round(fraction * len(rows)), replace=False):
        others = [label for label in labels if label != str(rows[i]["label"])]
        noisy[i]["label"] = others[rng.integers(len(others))]
    return noisy


def row_weights(rows: list[dict], data: ml_collections.ConfigDict) -> list[float]:
    """Each training row's loss weight: its `weight` field (default 1) times data.synthetic_weight for rows
    whose `source` is `synthetic`."""
    import math

    from ftjax.data.sources import where

    out = []
    for r in rows:
        w = r.get("weight", 1.0)
        if isinstance(w, str):
            try:
                w = float(w)  # a CSV cell
            except ValueError:
                w = None
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0:
            raise ValueError(f"{where(r)}: field 'weight' must be a finite number >= 0, got {r.get('weight')!r}")
        out.append(float(w) * (data.get("synthetic_weight", 1.0) if r.get("source") == "synthetic" else 1.0))
    return out


def group_balanced(rows: list[dict], data: ml_collections.ConfigDict) -> list[dict]:
    """The training rows with data.group_balance applied (by the groups their input mentions): reweighted
    copies (their `weight` field scaled) or repeated rows; the rows themselves when it is none."""
    from ftjax.data.formats import resolve_format, text_views
    from ftjax.data.groups import balance_weights, load_lexicon, resample_counts

    if data.get("group_balance", "none") == "none":
        return rows
    lexicon = load_lexicon(data.groups)
    lexicon.attribute(data.group_attribute)
    groups = [lexicon.group_of(text_views(r, resolve_format(r, data.format))[0], data.group_attribute) for r in rows]
    if data.group_balance == "resample":
        return [r for r, k in zip(rows, resample_counts(groups)) for _ in range(k)]
    weights = row_weights(rows, ml_collections.ConfigDict({"synthetic_weight": 1.0}))  # their own `weight` fields
    return [r | {"weight": new} if new != w else r for r, w, new in zip(rows, weights, balance_weights(groups, weights))]


def label_set(data: ml_collections.ConfigDict) -> list[str] | None:
    """The configured label set, or None to take the labels from the rows."""
    return [s.strip() for s in data.labels.split(",") if s.strip()] or None
