"""The `data` block of an experiment config: where the splits are and how rows become token ids.

    train, validation, test   row sources (ftjax.data.sources: a path, hf:NAME, tfds:NAME); '' = none;
                              validation may be `holdout:F`: a fraction F of the training rows, stratified by
                              label, near-identical inputs kept together, the same for every seed
    per_label                 keep at most this many training rows per label (0 = all): few-shot regimes
    format                    auto | prompt_completion | chat | classification | data_to_text | regression
    columns                   field mapping ours=theirs,... (e.g. prompt=mr,completion=ref)
    labels                    comma-separated label set of classification rows ('' = from the rows)
    max_length                tokens per example (longer ones are truncated)
    pack                      pack several examples per training row (segment ids keep them apart)
"""

from __future__ import annotations

import ml_collections

from ftjax.config import at_least, one_of
from ftjax.data.formats import FORMATS

HOLDOUT = "holdout:"


def default_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(dict(train="", validation="", test="", format="auto", columns="", labels="",
                                          max_length=256, pack=False, per_label=0))


def check(data: ml_collections.ConfigDict, need_train: bool = True) -> None:
    """One-line errors for a bad `data` block, before any file is read."""
    one_of(data, "data", "format", ("auto", *FORMATS))
    at_least(data, "data", 2, "max_length")
    at_least(data, "data", 0, "per_label")
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
    return rows


def label_set(data: ml_collections.ConfigDict) -> list[str] | None:
    """The configured label set, or None to take the labels from the rows."""
    return [s.strip() for s in data.labels.split(",") if s.strip()] or None
