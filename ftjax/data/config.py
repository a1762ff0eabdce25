"""The `data` block of an experiment config: where the splits are and how rows become token ids.

    train, validation, test   row sources (ftjax.data.sources: a path, hf:NAME, tfds:NAME); '' = none
    format                    auto | prompt_completion | chat | classification | data_to_text
    columns                   field mapping ours=theirs,... (e.g. prompt=mr,completion=ref)
    labels                    comma-separated label set of classification rows ('' = from the rows)
    max_length                tokens per example (longer ones are truncated)
    pack                      pack several examples per training row (segment ids keep them apart)
"""

from __future__ import annotations

import ml_collections

from ftjax.config import at_least, one_of
from ftjax.data.formats import FORMATS


def default_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(dict(train="", validation="", test="", format="auto", columns="", labels="",
                                          max_length=256, pack=False))


def check(data: ml_collections.ConfigDict, need_train: bool = True) -> None:
    """One-line errors for a bad `data` block, before any file is read."""
    one_of(data, "data", "format", ("auto", *FORMATS))
    at_least(data, "data", 2, "max_length")
    if need_train and not str(data.train).strip():
        raise ValueError("data.train is empty: set --config.data.train to a JSONL/CSV/Parquet file or hf:/tfds: source")


def label_set(data: ml_collections.ConfigDict) -> list[str] | None:
    """The configured label set, or None to take the labels from the rows."""
    return [s.strip() for s in data.labels.split(",") if s.strip()] or None
