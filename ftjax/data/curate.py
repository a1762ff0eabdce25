"""`ftjax data curate` as a library call: PII masking, quality filters, exact then near-duplicate removal.

Returns the kept rows and a report saying what was removed and why, with examples. Classification rows are
compared on their text alone, so the same text under two labels is caught (and counted as a label conflict);
in other formats both the input and the target must match, so several references for one input are kept.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field

from tqdm import tqdm

from ftjax.data.dedup import NearDuplicateIndex
from ftjax.data.formats import label_counts, label_of, map_texts, resolve_format, text_views
from ftjax.data.pii import KINDS, scrub
from ftjax.data.quality import REASONS, Filters, normalize
from ftjax.data.report import histogram
from ftjax.data.sources import where


@dataclass(frozen=True)
class CurateOptions:
    fmt: str = "auto"
    near_threshold: float = 0.8  # 0 switches near-duplicate removal off
    ngram: int = 5
    num_perm: int = 128
    scrub_pii: bool = False
    filters: Filters = field(default_factory=Filters)
    examples: int = 5  # examples per removal reason in the report


def dedup_key(row: dict, fmt: str) -> tuple[str, ...]:
    """What exact duplicates share, normalised: a classification row's text, else input and target."""
    said, target = text_views(row, fmt)
    return (normalize(said),) if fmt == "classification" else (normalize(said), normalize(target))


def curate(rows: list[dict], opts: CurateOptions = CurateOptions()) -> tuple[list[dict], dict]:
    start = time.time()
    fmts = [resolve_format(r, opts.fmt) for r in rows]
    removed: dict[str, list[dict]] = {reason: [] for reason in REASONS}
    pii_total: Counter = Counter()
    pii_rows, pii_examples, conflicts, kept = 0, [], [], []
    for row, fmt in zip(tqdm(rows, desc="filter", unit="row", file=sys.stderr, disable=len(rows) < 5000), fmts):
        found: Counter = Counter()

        def masked(text: str) -> str:
            new, counts = scrub(text)
            found.update(counts)
            return new

        clean = map_texts(row, fmt, masked)
        if found:
            pii_total.update(found)
            pii_rows += 1
            pii_examples.append({"where": where(row), "kinds": dict(found), "masked": _snippet(clean, fmt)})
        row = clean if opts.scrub_pii else row
        problem = opts.filters.problem(*text_views(row, fmt))
        if problem:
            removed[problem].append({"where": where(row), "text": _snippet(row, fmt)})
        else:
            kept.append((row, fmt))
    out = _exact_pass(kept, removed["exact_duplicate"], conflicts)
    if opts.near_threshold:
        out = _near_pass(out, NearDuplicateIndex(opts.near_threshold, opts.ngram, opts.num_perm),
                         removed["near_duplicate"], conflicts)

    report = {
        "rows_in": len(rows), "rows_out": len(out),
        "formats": dict(Counter(fmts)),
        "removed": {reason: len(items) for reason, items in removed.items()},
        "reasons": REASONS,
        "label_conflicts": {"count": len(conflicts), "examples": conflicts[:opts.examples]},
        "pii": {"rows": pii_rows, **{k: pii_total[k] for k in KINDS}, "scrubbed": opts.scrub_pii,
                "examples": pii_examples[:opts.examples]},
        "examples": {reason: items[:opts.examples] for reason, items in removed.items() if items},
        "lengths_words": {"before": histogram([_words(r, f) for r, f in zip(rows, fmts)]),
                          "after": histogram([_words(r, f) for r, f in out])},
        "labels": {"before": label_counts(rows, opts.fmt), "after": label_counts([r for r, _ in out], opts.fmt)},
        "options": asdict(opts),
        "seconds": round(time.time() - start, 2),
    }
    return [r for r, _ in out], report


def _exact_pass(rows: list[tuple[dict, str]], removed: list[dict], conflicts: list[dict]) -> list[tuple]:
    first: dict[tuple[str, ...], tuple[dict, str]] = {}
    out = []
    for row, fmt in rows:
        key = dedup_key(row, fmt)
        if key in first:
            removed.append(_dup(row, fmt, *first[key], 1.0, conflicts))
        else:
            first[key] = (row, fmt)
            out.append((row, fmt))
    return out


def _near_pass(rows: list[tuple[dict, str]], index: NearDuplicateIndex, removed: list[dict],
               conflicts: list[dict]) -> list[tuple]:
    """Only rows of one format are compared. Data-to-text inputs are records: a different attribute value is a
    different example however similar the strings, so the record must match exactly and only the text is
    compared approximately."""
    keys = [dedup_key(r, f) for r, f in rows]
    kinds = [(f, k[0] if f == "data_to_text" else None) for k, (_, f) in zip(keys, rows)]
    sigs = index.signatures([k[1:] if f == "data_to_text" else k for k, (_, f) in zip(keys, rows)])
    out = []
    for i, ((row, fmt), sig) in enumerate(tqdm(list(zip(rows, sigs)), desc="near-duplicates", unit="row",
                                               file=sys.stderr, disable=len(rows) < 5000)):
        hit = index.match(sig, accept=lambda j: kinds[j] == kinds[i])
        if hit is None:
            index.add(i, sig)
            out.append((row, fmt))
        else:
            removed.append(_dup(row, fmt, *rows[hit[0]], hit[1], conflicts))
    return out


def _dup(row: dict, fmt: str, first: dict, first_fmt: str, sim: float, conflicts: list[dict]) -> dict:
    """A removed duplicate for the report; duplicates whose labels differ also go to `conflicts`."""
    item = {"where": where(row), "text": _snippet(row, fmt), "duplicate_of": where(first),
            "original": _snippet(first, first_fmt), "similarity": round(sim, 3)}
    if label_of(row, fmt) != label_of(first, first_fmt):
        conflicts.append(item)
    return item


def _snippet(row: dict, fmt: str, limit: int = 200) -> str:
    """A short view of the row for the report, always with personal data masked."""
    said, target = text_views(row, fmt)
    text = scrub(f"{said} => {target}" if fmt != "classification" else f"{said} => [{target}]")[0]
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _words(row: dict, fmt: str) -> int:
    said, target = text_views(row, fmt)
    return len(said.split()) + (len(target.split()) if fmt != "classification" else 0)

