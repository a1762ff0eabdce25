"""`ftjax audit data`: how a data set represents the lexicon's groups, before anything is trained on it.

Per attribute and group: the rows whose input mentions it and whose target mentions it (count and rate), the
label distribution of those rows (classification) with a chi-squared test of whether it differs from the other
rows', and examples with their file:line. Flags: a group never mentioned, a group mentioned less than
`imbalance` times as often as its attribute's most mentioned group, a label mix that differs (p < 0.01), and
every row with a sensitive term.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from ftjax.data.formats import label_of, resolve_format, text_views
from ftjax.data.groups import Lexicon
from ftjax.data.sources import where

IMBALANCE = 0.5  # flag a group mentioned in fewer than half as many rows as its attribute's most mentioned one
P_VALUE = 0.01


def _label_test(labels: Sequence[str | None], inside: Sequence[bool]) -> float | None:
    """Chi-squared p-value of group rows' labels against the other rows' (None without two labels on each side)."""
    from scipy.stats import chi2_contingency

    classes = sorted({x for x in labels if x is not None})
    if len(classes) < 2 or not any(inside) or all(inside):
        return None
    table = [[sum(1 for x, m in zip(labels, inside) if x == c and m == side) for c in classes] for side in (True, False)]
    keep = [k for k in range(len(classes)) if table[0][k] + table[1][k] > 0]
    return float(chi2_contingency([[row[k] for k in keep] for row in table])[1])


def audit_data(rows: Sequence[dict], lexicon: Lexicon, fmt: str = "auto", examples: int = 3,
               imbalance: float = IMBALANCE) -> dict:
    """The data audit of `rows` as a JSON-ready report."""
    views, labels = [], []
    for r in rows:
        f = resolve_format(r, fmt)
        views.append(text_views(r, f) if f != "classification" else (r["text"], ""))
        labels.append(label_of(r, f))
    n = len(rows)
    overall = Counter(x for x in labels if x is not None)
    said = [lexicon.mentions(v[0]) for v in views]
    answered = [lexicon.mentions(v[1]) if v[1] else {} for v in views]
    report = {"rows": n, "lexicon": lexicon.source, "attributes": {}, "sensitive": {}, "flags": []}
    for name, attr in lexicon.attributes.items():
        groups = {}
        for g in attr.groups:
            inside = [g in m.get(name, ()) for m in said]
            target = sum(g in m.get(name, ()) for m in answered)
            mine = Counter(x for x, m in zip(labels, inside) if m and x is not None)
            block = {"input_rows": sum(inside), "input_rate": sum(inside) / max(n, 1), "target_rows": target,
                     "target_rate": target / max(n, 1),
                     "examples": [f"{where(r)}: {v[0]}" for r, v, m in zip(rows, views, inside) if m][:examples]}
            if overall:
                block["labels"] = dict(mine.most_common(10))
                block["label_p_value"] = _label_test(labels, inside)
            groups[g] = block
        report["attributes"][name] = {"groups": groups, **_flags(name, groups, imbalance, report["flags"])}
    flagged = [lexicon.sensitive_terms(v[0] + "\n" + v[1]) for v in views]
    for term in lexicon.sensitive:
        hits = [(r, v) for r, v, f in zip(rows, views, flagged) if term in f]
        if hits:
            report["sensitive"][term] = {"rows": len(hits), "examples": [f"{where(r)}: {v[0]}" for r, v in hits][:examples]}
            report["flags"].append(f"sensitive term {term!r}: {len(hits)} row(s), e.g. {where(hits[0][0])}")
    return report


def _flags(name: str, groups: dict, imbalance: float, flags: list[str]) -> dict:
    counts = {g: b["input_rows"] for g, b in groups.items()}
    top = max(counts.values())
    ratio = min(counts.values()) / top if top else None
    for g, c in counts.items():
        if c == 0:
            flags.append(f"{name}: group {g!r} is never mentioned")
        elif c < imbalance * top:
            flags.append(f"{name}: group {g!r} in {c} rows vs {top} for the most mentioned ({c / top:.2f} < {imbalance})")
        p = groups[g].get("label_p_value")
        if p is not None and p < P_VALUE:
            flags.append(f"{name}: the labels of rows mentioning {g!r} differ from the rest (chi-squared p={p:.2g})")
    return {"representation_ratio": ratio}
