"""Audit reports: audit.json, report.md and a self-contained report.html (plots embedded), for a data audit, a
model audit or a before/after comparison of two model audits. A folder of them attaches to a registry version
(`ftjax registry attach`), and `ftjax export` quotes report.md in the model card when it sits in RUN/audit/.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ftjax.io import atomic_dir, write_json, write_text  # noqa: E402
from ftjax.monitor.report import STYLE, html_table, markdown_table  # noqa: E402

Section = tuple[str, str, Sequence[str], Sequence[Sequence]]  # heading, text, table headers, table rows
FAIRNESS = ("accuracy_difference", "dp_difference", "disparate_impact", "eo_difference")


def ci(block: dict | None, digits: int = 1) -> str:
    """'12.3 [10.1, 14.2]' from {"value", "low", "high"}; '-' when absent or undefined."""
    if not block or block.get("value") is None or block["value"] != block["value"]:
        return "-"
    text = f"{block['value']:.{digits}f}"
    return text + (f" [{block['low']:.{digits}f}, {block['high']:.{digits}f}]" if "low" in block else "")


def _png(fig) -> bytes:
    buf = io.BytesIO()
    try:
        fig.tight_layout()
        fig.savefig(buf, dpi=100, format="png")
    finally:
        plt.close(fig)
    return buf.getvalue()


def write(out: str | Path, title: str, sections: Sequence[Section], plots: dict[str, bytes], report: dict,
          overwrite: bool = False) -> Path:
    """The report folder `out` (audit.json, report.md, report.html, one PNG per plot), written whole or not at all."""
    with atomic_dir(out, overwrite=overwrite) as tmp:
        write_json(tmp / "audit.json", report)
        md = [f"# {title}", ""]
        page = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
                f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>"]
        for heading, text, headers, rows in sections:
            md += [f"## {heading}", "", text, ""] + ([markdown_table(headers, rows), ""] if rows else [])
            page += [f"<h2>{html.escape(heading)}</h2><p>{html.escape(text)}</p>"]
            page += [html_table(headers, rows)] if rows else []
        for name, data in plots.items():
            (tmp / f"{name}.png").write_bytes(data)
            md += [f"![{name}]({name}.png)", ""]
            page.append(f'<p><img alt="{html.escape(name)}" src="data:image/png;base64,'
                        f'{base64.b64encode(data).decode()}"></p>')
        page.append("</body></html>")
        write_text(tmp / "report.md", "\n".join(md))
        write_text(tmp / "report.html", "\n".join(page))
    return Path(out)


def data_sections(r: dict) -> tuple[list[Section], dict[str, bytes]]:
    sections: list[Section] = [("Flags", f"{r['rows']} rows; lexicon {r['lexicon']}. " + (
        f"{len(r['flags'])} flag(s):" if r["flags"] else "Nothing flagged."), ["flag"], [[f] for f in r["flags"]])]
    for name, a in r["attributes"].items():
        rows = []
        for g, b in a["groups"].items():
            top = ", ".join(f"{k} {v}" for k, v in list(b.get("labels", {}).items())[:3])
            p = b.get("label_p_value")
            rows.append([g, b["input_rows"], f"{100 * b['input_rate']:.2f}%", b["target_rows"], top or "-",
                         "-" if p is None else f"{p:.2g}", " / ".join(b["examples"][:1]) or "-"])
        ratio = a["representation_ratio"]
        sections.append((f"Attribute: {name}", "Rows whose input mentions each group; representation ratio "
                         f"(least / most mentioned group): {'-' if ratio is None else f'{ratio:.2f}'}.",
                         ["group", "input rows", "rate", "target rows", "top labels", "label p", "example"], rows))
    if r["sensitive"]:
        sections.append(("Sensitive terms", "Rows to review by hand.", ["term", "rows", "example"],
                         [[t, b["rows"], b["examples"][0]] for t, b in r["sensitive"].items()]))
    fig, axes = plt.subplots(1, len(r["attributes"]), figsize=(3.2 * len(r["attributes"]) + 1, 3), squeeze=False)
    for ax, (name, a) in zip(axes[0], r["attributes"].items()):
        groups = list(a["groups"])
        ax.barh(groups, [a["groups"][g]["input_rows"] for g in groups], color="tab:blue")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("rows mentioning", fontsize=8)
        ax.tick_params(labelsize=7)
    return sections, {"representation": _png(fig)}


def _metric_key(task: str) -> str:
    return "accuracy" if task == "classification" else "rouge_l"


def model_sections(r: dict) -> tuple[list[Section], dict[str, bytes]]:
    key = _metric_key(r["task"])
    sections: list[Section] = [("Task metrics", f"{r['items']} test items ({r['task']}).", ["metric", "value"],
                                [[k, ci(v, 2)] for k, v in r["metrics"].items()])]
    sections.append(("Findings", "What the audit found, attribute by attribute.", ["finding"],
                     [[f] for f in findings(r)]))
    for name, a in r["attributes"].items():
        obs, cf = a["observed"], a.get("counterfactual", {})
        rows = [[g, a["mentions"].get(g, 0), ci(obs["groups"].get(g, {}).get(key)),
                 ci(cf.get("groups", {}).get(g, {}).get(key)) if cf else "-"] for g in a["mentions"]]
        sections.append((f"{name}: {key} per group", f"Observed: the {obs['rows']} test items that mention one group "
                         f"({a['several']} mention several). Counterfactual: {cf.get('items', 0)} such items, each "
                         f"rendered in every group ({cf.get('versions', 0)} versions).",
                         ["group", "items mentioning", f"observed {key}", f"counterfactual {key}"], rows))
        fair = [[view, *(ci(b["fairness"]["summary"][m], 3 if m != "accuracy_difference" else 1) for m in FAIRNESS),
                 {True: "passes", False: "fails", None: "-"}[b["fairness"]["four_fifths"]],
                 b["fairness"]["worst_class"].get("dp_difference", "-")]
                for view, b in (("observed", obs), ("counterfactual", cf)) if b and "fairness" in b]
        skipped = [f"{view}: {b['fairness_skipped']}" for view, b in (("observed", obs), ("counterfactual", cf))
                   if b and "fairness_skipped" in b]
        if fair or skipped:
            sections.append((f"{name}: fairness", "Worst class, one class against the rest, over the groups with "
                             f"{r.get('min_rows', 0)}+ items; 95% percentile bootstrap intervals (a gap between "
                             "groups is biased upward under resampling, so its interval can sit above the point "
                             "value). " + " ".join(f"No fairness metrics for {s}." for s in skipped),
                             ["view", "accuracy gap (points)", "DP difference", "disparate impact", "EO difference",
                              "four-fifths rule", "worst DP class"], fair))
        if cf:
            pairs = [[p, b["items"], b["flips"], ci(b["flip_rate"]), ci(b.get("similarity"), 3)]
                     for p, b in cf["pairs"].items()]
            sections.append((f"{name}: counterfactual flips", f"Outputs that changed when the group terms were "
                             f"swapped: {ci(cf['flip_rate'])}% overall.",
                             ["swap", "items", "flips", "flip rate %", "ROUGE-L to the original"], pairs))
            shown = [[e["source"], e["original"], e["counterfactual"], e["output"], e["counterfactual_output"]]
                     for b in cf["pairs"].values() for e in b["examples"]]
            if shown:
                sections.append((f"{name}: flipped examples", "Read these: a flip may be right (a label that "
                                 "depends on the group) or a bias.", ["source", "input", "swapped", "output",
                                                                       "swapped output"], shown[:10]))
    return sections, _model_plots(r, key)


def findings(r: dict) -> list[str]:
    """Plain sentences: what each attribute showed, including that nothing was found."""
    out = []
    for name, a in r["attributes"].items():
        cf = a.get("counterfactual")
        if not a["observed"]["rows"] and not cf:
            out.append(f"{name}: no test item mentions a group; nothing to measure.")
            continue
        if cf:
            f = cf["flip_rate"]
            flips = sum(b["flips"] for b in cf["pairs"].values())
            n = sum(b["items"] for b in cf["pairs"].values())
            verdict = "no output changed" if flips == 0 else f"{flips} of {n} swapped versions changed the output"
            out.append(f"{name}: swapping group terms on {cf['items']} items: {verdict} ({ci(f)}%).")
        for view in ("observed", "counterfactual"):
            b = a.get(view) or {}
            if "fairness_skipped" in b:
                out.append(f"{name} ({view}): no fairness metrics ({b['fairness_skipped']}).")
            if "fairness" in b:
                s = b["fairness"]["summary"]
                gap = s["accuracy_difference"]
                no_gap = "low" in gap and gap["low"] <= 0.0 + 1e-12
                di = s["disparate_impact"]
                out.append(f"{name} ({view}): accuracy gap {ci(gap)} points"
                           f"{' (interval reaches 0: no disparity shown)' if no_gap else ''}; worst-class disparate "
                           f"impact {ci(di, 3)}, four-fifths rule "
                           f"{ {True: 'passes', False: 'fails', None: 'undefined'}[b['fairness']['four_fifths']]}.")
    return out


def _model_plots(r: dict, key: str) -> dict[str, bytes]:
    attrs = [(n, a) for n, a in r["attributes"].items() if a["observed"]["rows"] or a.get("counterfactual")]
    if not attrs:
        return {}
    fig, axes = plt.subplots(1, len(attrs), figsize=(3.4 * len(attrs) + 1, 3.2), squeeze=False)
    for ax, (name, a) in zip(axes[0], attrs):
        groups = list(a["mentions"])
        for k, (view, color) in enumerate((("observed", "tab:blue"), ("counterfactual", "tab:orange"))):
            block = a.get(view) or {}
            vals = [block.get("groups", {}).get(g, {}).get(key, {}) for g in groups]
            y = [v.get("value", float("nan")) for v in vals]
            err = [[max(v.get("value", 0) - v.get("low", v.get("value", 0)), 0) for v in vals],
                   [max(v.get("high", v.get("value", 0)) - v.get("value", 0), 0) for v in vals]]
            ax.bar([i + 0.4 * k for i in range(len(groups))], y, 0.4, yerr=err, color=color, label=view, capsize=2)
        ax.set_xticks([i + 0.2 for i in range(len(groups))], groups, rotation=30, ha="right", fontsize=7)
        ax.set_title(name, fontsize=9)
        ax.set_ylabel(key, fontsize=8)
    axes[0, 0].legend(fontsize=7)
    plots = {"groups": _png(fig)}
    flips = [(n, a["counterfactual"]["flip_rate"]) for n, a in attrs if a.get("counterfactual")]
    if flips:
        fig, ax = plt.subplots(figsize=(1.2 * len(flips) + 2.5, 3))
        vals = [f.get("value", 0) for _, f in flips]
        err = [[max(f["value"] - f.get("low", f["value"]), 0) for _, f in flips],
               [max(f.get("high", f["value"]) - f["value"], 0) for _, f in flips]]
        ax.bar([n for n, _ in flips], vals, yerr=err, color="tab:red", capsize=3)
        ax.set_ylabel("counterfactual flip rate %", fontsize=8)
        ax.tick_params(labelsize=8)
        plots["flips"] = _png(fig)
    return plots


def compare_sections(before: dict, after: dict, names: tuple[str, str] = ("before", "after")) -> list[Section]:
    """Task and fairness metrics of two model audits side by side (e.g. before and after a mitigation)."""
    def row(label: str, a: dict | None, b: dict | None, digits: int = 2) -> list:
        delta = "-" if not a or not b or a.get("value") is None or b.get("value") is None else \
            f"{b['value'] - a['value']:+.{digits}f}"
        return [label, ci(a, digits), ci(b, digits), delta]

    rows = [row(k, before["metrics"].get(k), after["metrics"].get(k)) for k in before["metrics"] if k in after["metrics"]]
    for name in before["attributes"]:
        a, b = before["attributes"][name], after["attributes"].get(name, {})
        if "counterfactual" in a and "counterfactual" in b:
            rows.append(row(f"{name}: counterfactual flip rate %", a["counterfactual"]["flip_rate"],
                            b["counterfactual"]["flip_rate"]))
        for view in ("observed", "counterfactual"):
            fa, fb = (a.get(view) or {}).get("fairness"), (b.get(view) or {}).get("fairness")
            if fa and fb:
                rows += [row(f"{name} ({view}): {m}", fa["summary"][m], fb["summary"][m], 3) for m in FAIRNESS]
    return [("Before and after", f"{names[0]} vs {names[1]}: task metrics, counterfactual flip rates and fairness "
             "metrics (95% intervals; the change is after minus before).", ["metric", *names, "change"], rows)]
