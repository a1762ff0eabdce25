"""Reports of the data commands: a JSON file for machines and a Markdown page beside it for people, with text
histograms (readable in a terminal, an editor or on GitHub without a plotting library)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

from ftjax.io import write_text

BAR = 40  # characters of the longest bar


def histogram(values: list[float], bins: int = 12) -> dict:
    """Summary statistics and integer-edged bins of a list of lengths."""
    if not values:
        return {"count": 0}
    v = np.asarray(values, float)
    hi = int(v.max())
    width = max(1, math.ceil((hi - int(v.min()) + 1) / bins))
    edges = np.arange(int(v.min()), hi + width + 1, width)
    counts, _ = np.histogram(v, bins=edges)
    return {"count": len(v), "min": int(v.min()), "max": hi, "mean": round(float(v.mean()), 2),
            **{f"p{q}": float(np.percentile(v, q)) for q in (50, 90, 95, 99)},
            "bins": [[int(a), int(b) - 1, int(c)] for a, b, c in zip(edges[:-1], edges[1:], counts)]}


def bars(items: list[tuple[str, int]]) -> list[str]:
    """One `label  count  #####` line per item, bars scaled to the largest count."""
    if not items:
        return []
    top = max(c for _, c in items) or 1
    width = max(len(k) for k, _ in items)
    return [f"{k:<{width}}  {c:>6}  {'#' * max(1 if c else 0, round(BAR * c / top))}" for k, c in items]


def histogram_lines(h: dict) -> list[str]:
    if not h.get("count"):
        return ["(no rows)"]
    head = (f"n={h['count']} min={h['min']} p50={h['p50']:g} p90={h['p90']:g} p99={h['p99']:g} "
            f"max={h['max']} mean={h['mean']:g}")
    return ["```", head, *bars([(f"{a}-{b}" if b > a else f"{a}", c) for a, b, c in h["bins"]]), "```"]


def label_lines(counts: dict[str, int]) -> list[str]:
    if not counts:
        return ["(no labels)"]
    vals = list(counts.values())
    return [f"{len(counts)} labels; largest {max(vals)}, smallest {min(vals)}, ratio {max(vals) / min(vals):.2f}",
            "", "```", *bars(list(counts.items())), "```"]


def write_report(path: str | os.PathLike, report: dict, markdown: list[str]) -> tuple[Path, Path]:
    """`path` (JSON) and the Markdown page beside it (same name, .md), each written whole or not at all."""
    p = Path(path)
    if p.suffix == ".md":
        raise ValueError(f"{p}: give the report's JSON path; the Markdown page is written beside it")
    md = p.with_suffix(".md")
    write_text(p, json.dumps(report, indent=1, ensure_ascii=False) + "\n")
    write_text(md, "\n".join(markdown) + "\n")
    return p, md


def curate_markdown(r: dict, source: str) -> list[str]:
    pii = r["pii"]
    lines = [f"# Curation report: {source}", "",
             f"{r['rows_in']} rows in, {r['rows_out']} kept, {r['rows_in'] - r['rows_out']} removed "
             f"({r['seconds']} s). Formats: {', '.join(f'{k} {v}' for k, v in r['formats'].items())}.", "",
             "| removed because | rows | rule |", "| --- | ---: | --- |"]
    lines += [f"| {k} | {n} | {r['reasons'][k]} |" for k, n in r["removed"].items()]
    lines += ["", f"Label conflicts (duplicates with different labels; the first row's label is kept): "
              f"{r['label_conflicts']['count']}", ""]
    lines += [f"- `{e['where']}` {_q(e['text'])} vs `{e['duplicate_of']}` {_q(e['original'])}"
              for e in r["label_conflicts"]["examples"]]
    masked = "masked in the output" if pii["scrubbed"] else "NOT masked (pass --scrub_pii)"
    lines += ["", "## Personal data", "",
              f"{pii['rows']} rows with personal data: {pii['email']} emails, {pii['phone']} phone numbers, "
              f"{pii['card']} card numbers; {masked}."]
    lines += [f"- `{e['where']}` {e['kinds']}: {_q(e['masked'])}" for e in pii["examples"]]
    lines += ["", "## Examples of removed rows"]
    for reason, items in r["examples"].items():
        lines += ["", f"### {reason}", ""]
        for e in items:
            extra = (f" — duplicate of `{e['duplicate_of']}` ({e['similarity']}): {_q(e['original'])}"
                     if "duplicate_of" in e else "")
            lines.append(f"- `{e['where']}`: {_q(e['text'])}{extra}")
    for when in ("before", "after"):
        lines += ["", f"## Length in words, {when}", "", *histogram_lines(r["lengths_words"][when])]
    if r["labels"]["before"]:
        for when in ("before", "after"):
            lines += ["", f"## Label balance, {when}", "", *label_lines(r["labels"][when])]
    return lines


def split_markdown(r: dict) -> list[str]:
    lines = [f"# Split report: {r['input']}", "", f"seed {r['seed']}, stratified: {r['stratified']}", "",
             "| split | rows |", "| --- | ---: |", *[f"| {k} | {n} |" for k, n in r["sizes"].items()], "",
             "## Leakage between splits", "", "| splits | same input | near-duplicate input |",
             "| --- | ---: | ---: |"]
    lines += [f"| {pair} | {v['exact']} | {v['near']} |" for pair, v in r["leakage"].items()] + [""]
    for pair, v in r["leakage"].items():
        lines += [f"- {pair}: `{e['where']}` ~ `{e['other']}` ({e['similarity']}): {_q(e['text'])}"
                  for e in v["examples"]]
    for name, counts in r["labels"].items():
        lines += ["", f"## Labels in {name}", "", *label_lines(counts)]
    return lines


def stats_markdown(s: dict, source: str) -> list[str]:
    e = s["per_epoch"]
    lines = [f"# Data stats: {source}", "",
             f"{s['rows']} rows; {s['truncated_rows']} longer than max_length={s['max_length']} (truncated).", "",
             f"Per epoch: {e['tokens']:,} tokens ({e['target_tokens']:,} trained on). Padded to max_length: "
             f"{e['padded_tokens']:,} tokens ({e['padding_fraction']:.1%} padding); packed: at least "
             f"{e['packed_sequences_at_least']:,} sequences of {s['max_length']}."]
    for name in ("tokens", "prompt_tokens", "target_tokens"):
        lines += ["", f"## {name.replace('_', ' ')} per row (before truncation)", "", *histogram_lines(s[name])]
    if s["labels"]:
        lines += ["", "## Labels", "", *label_lines(s["labels"])]
    return lines


def _q(text: str) -> str:
    return "“" + text.replace("\n", " ").replace("|", "\\|") + "”"
