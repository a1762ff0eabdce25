"""Train/validation/test splits and the leakage check between splits.

Rows whose normalised inputs are equal form one group and always land in the same split (E2E has several
references per meaning representation; putting them on both sides would leak the answer). Groups are shuffled
with the seed and, when rows have labels, assigned per label so every split keeps the label balance.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from itertools import combinations

import numpy as np

from ftjax.data.dedup import cross_matches
from ftjax.data.formats import label_of, resolve_format, text_views
from ftjax.data.quality import normalize
from ftjax.data.sources import where

SPLITS = ("train", "validation", "test")


def parse_fractions(text: str) -> tuple[float, ...]:
    try:
        fr = tuple(float(x) for x in text.split(","))
    except ValueError:
        raise ValueError(f"--fractions must be numbers like 0.8,0.1,0.1 (got {text!r})") from None
    if not 2 <= len(fr) <= 3 or min(fr) < 0 or abs(sum(fr) - 1) > 1e-6:
        raise ValueError(f"--fractions needs 2 or 3 non-negative numbers summing to 1 (got {text!r})")
    return fr


def input_key(row: dict, fmt: str) -> str:
    return normalize(text_views(row, fmt)[0])


def labelled(rows: list[dict], fmt: str = "auto") -> bool:
    return bool(rows) and all(label_of(r, resolve_format(r, fmt)) is not None for r in rows)


def split_rows(rows: list[dict], fractions: tuple[float, ...], seed: int, fmt: str = "auto",
               stratify: bool | None = None) -> dict[str, list[dict]]:
    """{split name: rows}; stratify=None stratifies when every row has a label."""
    fmts = [resolve_format(r, fmt) for r in rows]
    labels = [label_of(r, f) for r, f in zip(rows, fmts)]
    if stratify is None:
        stratify = labelled(rows, fmt)
    groups: dict[str, list[int]] = defaultdict(list)
    for i, (r, f) in enumerate(zip(rows, fmts)):
        groups[input_key(r, f)].append(i)
    strata: dict[str, list[list[int]]] = defaultdict(list)
    for members in groups.values():  # a group's label is its most common one
        label = Counter(labels[i] for i in members).most_common(1)[0][0] if stratify else ""
        strata[label].append(members)
    rng = np.random.default_rng(seed)
    bounds = np.cumsum(fractions)
    out: list[list[int]] = [[] for _ in fractions]
    for label in sorted(strata, key=str):
        members = strata[label]
        total, done = sum(map(len, members)), 0
        for g in rng.permutation(len(members)):
            mid = (done + len(members[g]) / 2) / total  # where the group's middle falls decides its split
            out[min(int(np.searchsorted(bounds, mid, side="right")), len(out) - 1)] += members[g]
            done += len(members[g])
    return {name: [rows[i] for i in rng.permutation(idx)] if idx else []
            for name, idx in zip(SPLITS, out) if fractions[SPLITS.index(name)] > 0}


def leakage(splits: dict[str, list[dict]], fmt: str = "auto", threshold: float = 0.8, ngram: int = 5,
            examples: int = 5) -> dict[str, dict]:
    """Per pair of splits: rows of the later split whose input also occurs (exactly, or as a near duplicate at
    `threshold`, 0 = exact only) in the earlier one, with examples."""
    keys = {name: [input_key(r, resolve_format(r, fmt)) for r in rows] for name, rows in splits.items()}
    report = {}
    for a, b in combinations(splits, 2):
        seen = {}
        for row, key in zip(splits[a], keys[a]):
            seen.setdefault(key, row)
        hits = [(splits[b][j], seen[k], 1.0) for j, k in enumerate(keys[b]) if k in seen]
        near = []
        if threshold:
            rest = {j: k for j, k in enumerate(keys[b]) if k not in seen}
            index = dict(enumerate(keys[a]))
            near = [(splits[b][j], splits[a][i], s) for j, i, s in
                    cross_matches(index, rest, threshold, ngram, desc=f"leakage {a}/{b}")]
        report[f"{a}/{b}"] = {
            "exact": len(hits), "near": len(near),
            "examples": [{"where": where(r), "other": where(o), "similarity": round(s, 3),
                          "text": text_views(r, resolve_format(r, fmt))[0][:200]}
                         for r, o, s in (hits[:examples] + near[:examples])]}
    return report

