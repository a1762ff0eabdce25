"""Two runs (or model versions) on the same test set, side by side: metrics with intervals, the paired
difference with its interval and a paired approximate-randomization p-value, loss curves, and examples where
the two disagree. Written as compare.json, compare.md and a self-contained compare.html (plots inlined).

A run is a workdir (its `eval/<split>.json`) or an eval result file (e.g. `runs/x/eval/test_baseline.json`);
its `*_predictions.jsonl` sits next to the result file.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Sequence
from pathlib import Path

from ftjax.io import read_jsonl, write_json, write_text
from ftjax.metrics.bootstrap import paired_test
from ftjax.metrics.suite import LOWER_IS_BETTER, statistics
from ftjax.workdir import read_metrics


def load_result(spec: str | Path, split: str = "test") -> dict:
    """{"name", "report", "predictions", "history"} of a workdir or an eval result file."""
    path = Path(spec)
    if path.is_dir():
        path = path / "eval" / f"{split}.json"
    if not path.is_file():
        raise FileNotFoundError(f"no eval result at {path} (run `ftjax eval` first, or pass an eval/*.json file)")
    report = json.loads(path.read_text())
    predictions = [row for _, row in read_jsonl(path.with_name(f"{path.stem}_predictions.jsonl"))]
    if path.parent.name != "eval":  # an `ftjax eval --out=DIR` folder (a task's, a decoding variant's): named by it
        return {"name": f"{path.parent.name}:{path.stem}", "report": report, "predictions": predictions,
                "history": []}
    workdir = path.parent.parent
    own = path.stem == split  # the workdir's own model; a baseline result did not train there
    name = workdir.name + ("" if own else f":{path.stem}")
    return {"name": name, "report": report, "predictions": predictions,
            "history": read_metrics(workdir) if own else []}


def _key(row: dict) -> str:
    return json.dumps([row.get("prompt"), row.get("messages"), row["references"]], sort_keys=True)


def align(rows_a: Sequence[dict], rows_b: Sequence[dict]) -> list[dict]:
    """rows_b in the order of rows_a; a ValueError unless both hold the same prompts and references."""
    by_key = {_key(r): r for r in rows_b}
    missing = [r for r in rows_a if _key(r) not in by_key]
    if missing or len(rows_a) != len(rows_b):
        first = missing[0].get("prompt") or missing[0].get("messages") if missing else "(count differs)"
        raise ValueError(f"the two runs were not evaluated on the same test set: {len(rows_a)} vs {len(rows_b)} "
                         f"items; first unmatched prompt: {str(first)[:80]!r}")
    return [by_key[_key(r)] for r in rows_a]


def paired_metrics(rows_a: Sequence[dict], rows_b: Sequence[dict], names: Sequence[str], normalize: str,
                   classes: Sequence[str] | None = None, n_resamples: int = 1000) -> dict[str, dict]:
    """{metric: {"a", "b", "delta", "low", "high", "p_value"}}: B minus A on the same examples."""
    rows_b = align(rows_a, rows_b)
    stats_a = statistics(rows_a, names, normalize, classes)
    stats_b = statistics(rows_b, names, normalize, classes)
    return {k: {"a": float(stats_a[k].value), "b": float(stats_b[k].value),
                **paired_test(stats_a[k], stats_b[k], n_resamples)} for k in names}


def compare_runs(spec_a: str, spec_b: str, out_dir: str | Path, split: str = "test", n_resamples: int = 1000,
                 n_examples: int = 5) -> dict:
    """Write the comparison of run B against run A into `out_dir`; returns what compare.json holds."""
    from ftjax.eval.plots import loss_curves, metric_bars

    a, b = load_result(spec_a, split), load_result(spec_b, split)
    if a["name"] == b["name"]:
        a["name"], b["name"] = f"A:{a['name']}", f"B:{b['name']}"
    ra, rb = a["report"], b["report"]
    names = [m for m in ra["metrics"] if m in rb["metrics"]]
    normalize = ra["settings"]["normalize"]
    classes = ra.get("classification", {}).get("labels")
    tests = paired_metrics(a["predictions"], b["predictions"], names, normalize, classes, n_resamples)
    out = Path(out_dir)
    bars = {r["name"]: {m: r["report"]["metrics"][m] for m in names if m not in LOWER_IS_BETTER} for r in (a, b)}
    figures = {"metrics": metric_bars(bars, out / "metrics.png", f"{split}: {a['name']} vs {b['name']}")}
    if a["history"] or b["history"]:
        figures["loss"] = loss_curves({r["name"]: r["history"] for r in (a, b) if r["history"]}, out / "loss.png")
    summary = {"a": a["name"], "b": b["name"], "split": ra.get("split", split), "items": len(a["predictions"]),
               "metrics": {m: {"a": ra["metrics"][m], "b": rb["metrics"][m], "difference": tests[m]} for m in names},
               "test": f"paired approximate randomization, {n_resamples} permutations; intervals: paired bootstrap",
               "examples": _disagreements(a["predictions"], align(a["predictions"], b["predictions"]), n_examples)}
    write_json(out / "compare.json", summary)
    write_text(out / "compare.md", _markdown(summary, {k: p.name for k, p in figures.items()}))
    write_text(out / "compare.html", _html(summary, figures))
    return summary


def _disagreements(rows_a: Sequence[dict], rows_b: Sequence[dict], n: int) -> list[dict]:
    """Up to n items where the predictions differ, largest per-example score gap first."""
    def gap(ra: dict, rb: dict) -> float:
        sa, sb = ra.get("scores", {}), rb.get("scores", {})
        return max((abs(sa[k] - sb[k]) for k in sa if k in sb), default=0.0)

    pairs = [(ra, rb) for ra, rb in zip(rows_a, rows_b) if ra["prediction"] != rb["prediction"]]
    pairs.sort(key=lambda p: -gap(*p))
    return [{"prompt": ra.get("prompt") or json.dumps(ra.get("messages")), "references": ra["references"],
             "a": ra["prediction"], "b": rb["prediction"]} for ra, rb in pairs[:n]]


def _fmt(v: dict) -> str:
    return f"{v['value']:.2f}" + (f" [{v['low']:.2f}, {v['high']:.2f}]" if "low" in v else "")


def _rows(summary: dict) -> list[list[str]]:
    rows = []
    for m, v in summary["metrics"].items():
        d = v["difference"]
        if "p_value" not in d:  # a corpus metric without per-example statistics (METEOR): the difference alone
            rows.append([m, _fmt(v["a"]), _fmt(v["b"]), f"{d['delta']:+.2f}", "-", "not tested"])
            continue
        better = (d["delta"] < 0) if m in LOWER_IS_BETTER else (d["delta"] > 0)
        verdict = ("B better" if better else "A better") if d["p_value"] < 0.05 and d["delta"] else "no sig. diff."
        rows.append([m, _fmt(v["a"]), _fmt(v["b"]), f"{d['delta']:+.2f} [{d['low']:+.2f}, {d['high']:+.2f}]",
                     f"{d['p_value']:.3f}", verdict])
    return rows


HEADER = ["metric", "A", "B", "B − A [95% CI]", "p", "at p < 0.05"]


def _markdown(summary: dict, images: dict[str, str]) -> str:
    lines = [f"# {summary['b']} vs {summary['a']} ({summary['split']}, {summary['items']} items)", "",
             f"A = `{summary['a']}`, B = `{summary['b']}`. Values with 95% bootstrap intervals; {summary['test']}.",
             "", "| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(r) + " |" for r in _rows(summary)]
    lines += [""] + [f"![{k}]({v})" for k, v in images.items()]
    if summary["examples"]:
        lines += ["", "## Where they differ", ""]
        for e in summary["examples"]:
            lines += [f"- **prompt**: {e['prompt']}", f"  - reference: {e['references'][0]}",
                      f"  - A: {e['a']}", f"  - B: {e['b']}"]
    return "\n".join(lines) + "\n"


def _html(summary: dict, figures: dict[str, Path]) -> str:
    esc = html.escape
    cells = lambda row, tag: "".join(f"<{tag}>{esc(c)}</{tag}>" for c in row)
    table = f"<table><tr>{cells(HEADER, 'th')}</tr>" + "".join(f"<tr>{cells(r, 'td')}</tr>" for r in _rows(summary))
    images = "".join(f'<img alt="{k}" src="data:image/png;base64,{base64.b64encode(p.read_bytes()).decode()}">'
                     for k, p in figures.items())
    examples = "".join(f"<tr><td>{esc(e['prompt'])}</td><td>{esc(e['references'][0])}</td><td>{esc(e['a'])}</td>"
                       f"<td>{esc(e['b'])}</td></tr>" for e in summary["examples"])
    return ("<!doctype html><meta charset='utf-8'><title>ftjax compare</title><style>body{font-family:sans-serif;"
            "max-width:1100px;margin:2em auto}table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid "
            "#ccc;padding:4px 8px;text-align:left}img{max-width:100%;display:block;margin:1em 0}</style>"
            f"<h1>{esc(summary['b'])} vs {esc(summary['a'])}</h1><p>{esc(summary['split'])}, {summary['items']} "
            f"items. Values with 95% bootstrap intervals; {esc(summary['test'])}.</p>{table}</table>{images}"
            + (f"<h2>Where they differ</h2><table><tr><th>prompt</th><th>reference</th><th>A</th><th>B</th></tr>"
               f"{examples}</table>" if examples else ""))

