"""`ftjax review export`: review sheets from prediction rows, as CSV and as a self-contained HTML page whose
form downloads the same CSV. With two systems the sheet is blinded (which one is output 1 is drawn per item)
and shuffled; the unblinding key goes to key.json, which stays with whoever runs the study.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import html
import io
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ftjax.eval.compare import align
from ftjax.review.rubric import KEY_FORMAT, Criterion, columns
from ftjax.io import write_json, write_text


def _prompt_text(row: dict) -> str:
    if row.get("messages") is not None:
        return "\n".join(f"{m['role']}: {m['content']}" for m in row["messages"])
    return row["prompt"]


def export_sheets(rows_a: Sequence[dict], out_dir: str | Path, rubric: list[Criterion],
                  rows_b: Sequence[dict] | None = None, names: tuple[str, str] = ("A", "B"), sample: int = 0,
                  seed: int = 0) -> dict:
    """Write sheet.csv, sheet.html and key.json into `out_dir` and return the key. rows_* are prediction rows
    (`ftjax eval`'s *_predictions.jsonl); `sample` > 0 reviews that many items drawn at random."""
    paired = rows_b is not None
    if paired:
        rows_b = align(rows_a, rows_b)
    rng = np.random.default_rng(seed)
    n = len(rows_a)
    if not n:
        raise ValueError("no predictions to review")
    if sample > n:
        raise ValueError(f"--sample={sample} but there are only {n} items")
    chosen = sorted(rng.choice(n, sample, replace=False).tolist()) if sample else list(range(n))
    if paired:
        chosen = rng.permutation(chosen).tolist()
    header = columns(rubric, paired)
    sheet, key_items = [], []
    for j, i in enumerate(chosen):
        item = f"item{j + 1:03d}"
        row = {"item": item, "prompt": _prompt_text(rows_a[i]), "reference": "\n".join(rows_a[i]["references"])}
        if paired:
            first = "a" if rng.random() < 0.5 else "b"
            outputs = (rows_a[i], rows_b[i]) if first == "a" else (rows_b[i], rows_a[i])
            row |= {"output_1": outputs[0]["prediction"], "output_2": outputs[1]["prediction"]}
            key_items.append({"item": item, "row": i, "first": first})
        else:
            row["output"] = rows_a[i]["prediction"]
            key_items.append({"item": item, "row": i})
        sheet.append({c: row.get(c, "") for c in header})
    key = {"format": KEY_FORMAT, "version": 1, "paired": paired, "rubric": [dataclasses.asdict(c) for c in rubric],
           "systems": {"a": names[0], **({"b": names[1]} if paired else {})}, "items": key_items}
    out = Path(out_dir)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, header)
    writer.writeheader()
    writer.writerows(sheet)
    write_text(out / "sheet.csv", buffer.getvalue(), newline="")
    write_text(out / "sheet.html", review_page(sheet, header, rubric, paired))
    write_json(out / "key.json", key)
    return key


FIXED = ("item", "prompt", "reference", "output", "output_1", "output_2")

_SCRIPT = r"""
const D = JSON.parse(document.getElementById('data').textContent);
const esc = s => String(s).replace(/[&<>"]/g, c => ({'&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;'}[c]));
const opts = vs => '<option value=""></option>' + vs.map(v => `<option>${v}</option>`).join('');
const range = (a, b) => Array.from({length: b - a + 1}, (_, i) => a + i);
const field = (item, col) => document.querySelector(`[name="${CSS.escape(item + '|' + col)}"]`);
const root = document.getElementById('items');
D.rows.forEach(r => {
  const outs = D.paired ? [1, 2] : [0];
  let h = `<h3>${esc(r.item)}</h3><b>Prompt</b><pre>${esc(r.prompt)}</pre>`;
  if (r.reference) h += `<b>Reference</b><pre>${esc(r.reference)}</pre>`;
  outs.forEach(k => {
    const sfx = k ? '_' + k : '';
    h += `<div class="out"><b>Output ${k || ''}</b><pre>${esc(r['output' + sfx])}</pre>`;
    D.rubric.forEach(c => { h += `<label>${esc(c.name)} <select name="${esc(r.item)}|${esc(c.name + sfx)}">` +
                                 `${opts(range(c.low, c.high))}</select></label> `; });
    h += '</div>';
  });
  if (D.paired) h += `<label>preferred <select name="${esc(r.item)}|preferred">` +
                     `${opts(['1', '2', 'tie'])}</select></label>`;
  h += `<label class="c">comment <textarea name="${esc(r.item)}|comment"></textarea></label>`;
  const s = document.createElement('section'); s.innerHTML = h; root.appendChild(s);
});
const saved = JSON.parse(localStorage.getItem(D.id) || '{}');
document.querySelectorAll('[name]').forEach(el => {
  if (el.name in saved) el.value = saved[el.name];
  el.addEventListener('change', () => {
    saved[el.name] = el.value;
    localStorage.setItem(D.id, JSON.stringify(saved));
  });
});
const q = v => '"' + String(v).replace(/"/g, '""') + '"';
document.getElementById('download').onclick = () => {
  const who = document.getElementById('reviewer').value.trim();
  let missing = 0;
  const lines = [D.columns.map(q).join(',')].concat(D.rows.map(r => D.columns.map(c => {
    if (c === 'reviewer') return q(who);
    if (c in r) return q(r[c]);
    const v = field(r.item, c).value;
    if (v === '' && c !== 'comment') missing++;
    return q(v);
  }).join(',')));
  document.getElementById('status').textContent = missing ? `${missing} scores still empty` : 'complete';
  const a = document.createElement('a');
  a.href = URL.createObjectURL(new Blob([lines.join('\r\n') + '\r\n'], {type: 'text/csv'}));
  a.download = `review_${who || 'reviewer'}.csv`; a.click();
};
"""


def review_page(sheet: list[dict], header: list[str], rubric: list[Criterion], paired: bool) -> str:
    """One HTML file, no network: the items, a form per item, and a button that downloads the filled CSV."""
    rows = [{k: v for k, v in r.items() if k in FIXED} for r in sheet]
    # the id keys the browser's autosave of this sheet's answers
    data = {"columns": header, "rubric": [dataclasses.asdict(c) for c in rubric], "paired": paired, "rows": rows,
            "id": "ftjax-review-" + hashlib.sha1(json.dumps(rows, sort_keys=True).encode()).hexdigest()[:12]}
    payload = json.dumps(data, ensure_ascii=False).replace("</", "<\\/")  # cannot close the script tag
    scale = "; ".join(f"{c.name} {c.low}-{c.high}" for c in rubric)
    how = ("Each item shows two outputs in random order: score both, then pick the one you prefer (or tie)."
           if paired else "Score the output of each item.")
    return ("<!doctype html><html><head><meta charset='utf-8'><title>ftjax review</title><style>"
            "body{font-family:sans-serif;max-width:1000px;margin:2em auto}section{border-top:1px solid #ccc;"
            "padding:.5em 0}pre{white-space:pre-wrap;background:#f6f6f6;padding:.5em}.out{display:inline-block;"
            "vertical-align:top;width:48%;margin-right:1%}label{margin-right:1em}.c textarea{width:100%}"
            f"</style></head><body><h1>Review</h1><p>{html.escape(how)} Scales: {html.escape(scale)}.</p>"
            "<p><label>your name <input id='reviewer'></label> <button id='download'>Download CSV</button> "
            "<span id='status'></span></p><div id='items'></div>"
            f"<script type='application/json' id='data'>{payload}</script><script>{_SCRIPT}</script></body></html>")
