"""Human review of data rows (synthetic ones above all): `ftjax review data-export` writes a sample of a JSONL
file's rows to a sheet, reviewers mark each `keep`, `fix` (with the corrected text or label) or `drop`, and
`ftjax review data-import` writes the data set back with the decisions applied: dropped rows gone, fixed rows
corrected (`review: fix`, the old value in `review_original`), kept ones marked `review: keep`, rows outside the
sample unchanged. Every other field (the origin of synthetic rows) passes through.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ftjax.io import file_sha256, read_jsonl, write_json, write_text

DATA_KEY_FORMAT = "ftjax-data-review-key"
DECISIONS = ("keep", "fix", "drop")
HEADER = ["item", "input", "output", "method", "origin", "decision", "fixed_input", "fixed_output", "comment",
          "reviewer"]


def _fields(row: dict, where: str) -> tuple[str, str]:
    """The names of a row's input and output fields (classification text/label, or prompt/completion)."""
    if "text" in row and "label" in row:
        return "text", "label"
    if "prompt" in row and "completion" in row:
        return "prompt", "completion"
    raise ValueError(f"{where}: a reviewed row needs text + label or prompt + completion")


def export_rows(path: str | Path, out_dir: str | Path, sample: int = 0, seed: int = 0) -> dict:
    """sheet.csv (items in file order) and key.json (the file, its hash and which line each item is)."""
    rows = [(n, r) for n, r in read_jsonl(path)]
    if not rows:
        raise ValueError(f"{path}: no rows to review")
    if sample > len(rows):
        raise ValueError(f"--sample={sample} but {path} has only {len(rows)} rows")
    chosen = sorted(np.random.default_rng(seed).choice(len(rows), sample, replace=False).tolist()) if sample \
        else list(range(len(rows)))
    sheet, items = [], []
    for j, i in enumerate(chosen):
        n, row = rows[i]
        a, b = _fields(row, f"{path}:{n}")
        item = f"item{j + 1:03d}"
        sheet.append({"item": item, "input": row[a], "output": str(row[b]), "method": row.get("method", ""),
                      "origin": row.get("origin", "")})
        items.append({"item": item, "line": n})
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, HEADER)
    writer.writeheader()
    writer.writerows({c: r.get(c, "") for c in HEADER} for r in sheet)
    write_text(out / "sheet.csv", buf.getvalue(), newline="")
    key = {"format": DATA_KEY_FORMAT, "data": str(Path(path).resolve()), "sha256": file_sha256(path), "items": items}
    write_json(out / "key.json", key)
    return key


def read_decisions(paths: Sequence[str | Path], key: dict) -> dict[int, dict]:
    """line -> {decision, fixed_input, fixed_output} from completed sheets; every sampled item needs one
    decision, and two sheets deciding one item differently is an error."""
    lines = {it["item"]: it["line"] for it in key["items"]}
    decided: dict[int, dict] = {}
    for path in paths:
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"no such file: {p}")
        with p.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = {"item", "decision", "fixed_input", "fixed_output"} - set(reader.fieldnames or ())
            if missing:
                raise ValueError(f"{p}:1: missing column(s) {', '.join(sorted(missing))}")
            for n, row in enumerate(reader, 2):
                item, decision = row["item"].strip(), row["decision"].strip().lower()
                if item not in lines:
                    raise ValueError(f"{p}:{n}: column item: {item!r} is not an item of this review")
                if decision not in DECISIONS:
                    raise ValueError(f"{p}:{n}: column decision: {row['decision']!r}; write keep, fix or drop")
                if decision == "fix" and not (row["fixed_input"].strip() or row["fixed_output"].strip()):
                    raise ValueError(f"{p}:{n}: column fixed_input: a fix needs fixed_input or fixed_output")
                got = {"decision": decision, "fixed_input": row["fixed_input"].strip(),
                       "fixed_output": row["fixed_output"].strip()}
                if lines[item] in decided and decided[lines[item]] != got:
                    raise ValueError(f"{p}:{n}: {item} was decided differently in another sheet")
                decided[lines[item]] = got
    undecided = [it["item"] for it in key["items"] if it["line"] not in decided]
    if undecided:
        raise ValueError(f"no decision for {len(undecided)} item(s): {', '.join(undecided[:5])}")
    return decided


def apply_decisions(key: dict, decisions: dict[int, dict]) -> tuple[list[dict], dict]:
    """(the data set's rows with the decisions applied, counts {keep, fix, drop, unreviewed})."""
    path = key["data"]
    if file_sha256(path) != key["sha256"]:
        raise ValueError(f"{path} changed since the sheet was exported; export a new sheet")
    counts = dict.fromkeys((*DECISIONS, "unreviewed"), 0)
    out = []
    for n, row in read_jsonl(path):
        d = decisions.get(n)
        if d is None:
            counts["unreviewed"] += 1
            out.append(row)
            continue
        counts[d["decision"]] += 1
        if d["decision"] == "drop":
            continue
        row = dict(row, review=d["decision"])
        if d["decision"] == "fix":
            a, b = _fields(row, f"{path}:{n}")
            row["review_original"] = {a: row[a], b: row[b]}
            row[a] = d["fixed_input"] or row[a]
            row[b] = d["fixed_output"] or row[b]
        out.append(row)
    return out, counts


def load_data_key(path: str | Path) -> dict:
    import json

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no review key at {p} (ftjax review data-export writes key.json)")
    key = json.loads(p.read_text(encoding="utf-8"))
    if key.get("format") != DATA_KEY_FORMAT:
        raise ValueError(f"{p} is not a data review key (ftjax review data-export writes one)")
    return key
