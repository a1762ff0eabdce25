"""`ftjax review import`: completed sheets of several reviewers, checked and summarised.

Every problem is a one-line ValueError naming file:line (the line where the row ends: cells may span lines),
the item and the column. The summary has per-criterion means
with 95% bootstrap intervals (resampling items, each item the mean of its reviewers), inter-rater agreement
as Krippendorff's alpha (ordinal for scores, nominal for preferences; any number of reviewers), and for A/B
sheets the win rates of each system with a two-sided sign test on the items' net preference.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ftjax.metrics.bootstrap import mean_statistic, with_ci
from ftjax.review.rubric import PREFERENCES, columns
from ftjax.io import write_json, write_text


def read_sheet(path: str | Path, key: dict) -> tuple[str, dict[str, dict]]:
    """(reviewer, {item: {column: value}}) of one completed sheet, every score checked."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    rubric, paired = key["rubric"], key["paired"]
    known = {i["item"] for i in key["items"]}
    with path.open(encoding="utf-8-sig", newline="") as f:  # -sig: spreadsheets may add a byte-order mark
        reader = csv.DictReader(f)
        missing = [c for c in columns(rubric, paired) if c not in (reader.fieldnames or []) and c != "reviewer"]
        if missing:
            raise ValueError(f"{path}:1: missing column {missing[0]!r} (is this a sheet of this review?)")
        answers: dict[str, dict] = {}
        reviewers = set()
        for row in reader:
            where = f"{path}:{reader.line_num}"
            item = (row["item"] or "").strip()
            if item not in known:
                raise ValueError(f"{where}: unknown item {item!r}")
            if item in answers:
                raise ValueError(f"{where}: item {item!r} appears twice")
            scores = {}
            for c in rubric:
                for col in ([f"{c.name}_1", f"{c.name}_2"] if paired else [c.name]):
                    text = (row[col] or "").strip()
                    if not text:
                        raise ValueError(f"{where}: missing score {col!r} for {item}")
                    if not text.lstrip("-").isdigit() or not c.low <= int(text) <= c.high:
                        raise ValueError(f"{where}: {col} is {text!r} for {item}, expected an integer "
                                         f"{c.low}-{c.high}")
                    scores[col] = int(text)
            if paired:
                pref = (row["preferred"] or "").strip().lower()
                if pref not in PREFERENCES:
                    raise ValueError(f"{where}: preferred is {pref!r} for {item}, expected one of "
                                     f"{', '.join(PREFERENCES)}")
                scores["preferred"] = pref
            scores["comment"] = row.get("comment") or ""
            reviewers.add((row.get("reviewer") or "").strip())
            answers[item] = scores
    unanswered = sorted(known - set(answers))
    if unanswered:
        raise ValueError(f"{path}: no row for item {unanswered[0]!r} ({len(unanswered)} items missing)")
    reviewers.discard("")
    if len(reviewers) > 1:
        raise ValueError(f"{path}: one sheet per reviewer, but it names {', '.join(sorted(reviewers))}")
    return (reviewers.pop() if reviewers else path.stem), answers


def read_sheets(paths: Sequence[str | Path], key: dict) -> dict[str, dict[str, dict]]:
    """{reviewer: answers} over several sheets; two sheets of one reviewer are an error."""
    out: dict[str, dict] = {}
    for p in paths:
        who, answers = read_sheet(p, key)
        if who in out:
            raise ValueError(f"{p}: reviewer {who!r} already has a sheet; name reviewers apart")
        out[who] = answers
    if not out:
        raise ValueError("give at least one completed sheet")
    return out


def krippendorff_alpha(matrix: np.ndarray, level: str) -> float | None:
    """Krippendorff's alpha of a [reviewers, units] matrix (NaN = not rated); None where undefined (one
    reviewer, or every rating the same)."""
    import krippendorff

    if matrix.shape[0] < 2 or len(np.unique(matrix[~np.isnan(matrix)])) < 2:
        return None
    return float(krippendorff.alpha(reliability_data=matrix, level_of_measurement=level))


def summarize(sheets: dict[str, dict[str, dict]], key: dict, n_resamples: int = 1000) -> dict:
    """Per-criterion means (per system) with intervals, agreement, and A/B win rates with a sign test."""
    from scipy.stats import binomtest

    reviewers, items = list(sheets), [i["item"] for i in key["items"]]
    systems = ["a", "b"] if key["paired"] else ["a"]
    first = {i["item"]: i.get("first", "a") for i in key["items"]}
    column = lambda item, system: "" if not key["paired"] else ("_1" if first[item] == system else "_2")
    out: dict = {"reviewers": reviewers, "items": len(items), "systems": key["systems"], "criteria": {}}
    for c in key["rubric"]:
        entry: dict = {"scale": [c.low, c.high]}
        for s in systems:
            scores = np.array([[sheets[r][i][c.name + column(i, s)] for i in items] for r in reviewers], float)
            entry[key["systems"][s]] = with_ci(mean_statistic(scores.mean(0), scale=1.0), n_resamples)
        units = np.concatenate([[[sheets[r][i][c.name + column(i, s)] for i in items] for r in reviewers]
                                for s in systems], axis=1).astype(float)
        entry["krippendorff_alpha"] = krippendorff_alpha(units, "ordinal")
        out["criteria"][c.name] = entry
    if key["paired"]:  # preference as +1 (b), -1 (a), 0 (tie), unblinded
        sign = lambda item, p: 0 if p == "tie" else (1 if (p == "2") == (first[item] == "a") else -1)
        votes = np.array([[sign(i, sheets[r][i]["preferred"]) for i in items] for r in reviewers], float)
        net = np.sign(votes.sum(0))
        wins_b, wins_a = int((net > 0).sum()), int((net < 0).sum())
        a, b = key["systems"]["a"], key["systems"]["b"]
        out["preference"] = {
            f"{b}_wins": with_ci(mean_statistic((votes == 1).mean(0), scale=1.0), n_resamples),
            f"{a}_wins": with_ci(mean_statistic((votes == -1).mean(0), scale=1.0), n_resamples),
            "ties": with_ci(mean_statistic((votes == 0).mean(0), scale=1.0), n_resamples),
            "items_won": {b: wins_b, a: wins_a, "tied": len(items) - wins_a - wins_b},
            "sign_test_p": float(binomtest(wins_b, wins_a + wins_b).pvalue) if wins_a + wins_b else 1.0,
            "krippendorff_alpha": krippendorff_alpha(votes, "nominal")}
    return out


def write_summary(summary: dict, out_dir: str | Path) -> list[Path]:
    """review_summary.json and review_summary.md in `out_dir`."""
    lines = [f"# Review: {summary['items']} items, {len(summary['reviewers'])} reviewers "
             f"({', '.join(summary['reviewers'])})", "", "| criterion | system | mean [95% CI] | alpha |",
             "|---|---|---|---|"]
    fmt = lambda v: f"{v['value']:.2f}" + (f" [{v['low']:.2f}, {v['high']:.2f}]" if "low" in v else "")
    alpha = lambda a: "n/a" if a is None else f"{a:.3f}"
    for name, entry in summary["criteria"].items():
        for system in summary["systems"].values():
            lines.append(f"| {name} | {system} | {fmt(entry[system])} | {alpha(entry['krippendorff_alpha'])} |")
    if "preference" in summary:
        p = summary["preference"]
        lines += ["", "| preference | share of judgments [95% CI] |", "|---|---|"]
        lines += [f"| {k} | {fmt(v)} |" for k, v in p.items() if isinstance(v, dict) and "value" in v]
        lines += ["", f"Items won: {p['items_won']}; two-sided sign test p = {p['sign_test_p']:.4f}; "
                      f"preference alpha (nominal) = {alpha(p['krippendorff_alpha'])}."]
    out = Path(out_dir)
    return [write_json(out / "review_summary.json", summary),
            write_text(out / "review_summary.md", "\n".join(lines) + "\n")]
