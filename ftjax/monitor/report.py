"""The monitor's history (one JSON line per monitored file, appended and never rewritten) and its report:
report.md and report.html with the same tables, and PNG plots of every statistic over the series."""

from __future__ import annotations

import html
import json
import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ftjax.io import atomic_file, parse_json, write_text  # noqa: E402


def read_history(path: Path) -> list[dict]:
    """The complete lines of a history file (a last line torn by a kill is not one)."""
    if not path.is_file():
        return []
    text = path.read_text()
    complete = text[: text.rfind("\n") + 1].splitlines()
    return [parse_json(line, f"{path}:{n}") for n, line in enumerate(complete, 1) if line.strip()]


def append_history(path: Path, entry: dict) -> None:
    """One line, flushed and synced: a kill leaves every earlier line whole (a torn last line is dropped by
    the next `append_history`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_file():
        text = path.read_text()
        if text and not text.endswith("\n"):  # a line torn by a kill: drop it, the file is recomputed
            with atomic_file(path) as tmp:
                tmp.write_text(text[: text.rfind("\n") + 1])
    with path.open("a") as f:
        f.write(json.dumps(entry, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _fmt(v) -> str:
    if isinstance(v, bool):
        return "ALARM" if v else "ok"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return "\n".join(lines + ["| " + " | ".join(_fmt(v) for v in r) + " |" for r in rows])


def html_table(headers: Sequence[str], rows: Sequence[Sequence]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(
        f'<td class="{"alarm" if _fmt(v) == "ALARM" else ""}">{html.escape(_fmt(v))}</td>' for v in r) + "</tr>"
        for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


STYLE = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse;margin:1em 0}"
         "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}td.alarm{background:#f8d0d0;font-weight:bold}"
         "img{max-width:100%}")


def write_report(out: Path, title: str, sections: Sequence[tuple[str, str, Sequence[str], Sequence[Sequence]]],
                 images: Sequence[Path]) -> list[Path]:
    """report.md and report.html from (heading, text, table headers, table rows) sections and PNGs in `out`."""
    md = [f"# {title}", ""]
    page = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>"]
    for heading, text, headers, rows in sections:
        md += [f"## {heading}", "", text, "", markdown_table(headers, rows), ""]
        page += [f"<h2>{html.escape(heading)}</h2><p>{html.escape(text)}</p>", html_table(headers, rows)]
    for img in images:
        md += [f"![{img.stem}]({img.name})", ""]
        page.append(f'<p><img src="{html.escape(img.name)}" alt="{html.escape(img.stem)}"></p>')
    page.append("</body></html>")
    return [write_text(out / "report.md", "\n".join(md)), write_text(out / "report.html", "\n".join(page))]


def series_plot(path: Path, names: Sequence[str], panels: dict[str, list[tuple[float, float | None, bool]]],
                ylabels: dict[str, str] | None = None) -> Path:
    """One panel per statistic: its value per file (red where it alarmed) and its threshold (dashed)."""
    fig, axes = plt.subplots(len(panels), 1, figsize=(max(6, 0.6 * len(names) + 3), 2.3 * len(panels)),
                             squeeze=False, sharex=True)
    x = list(range(len(names)))
    for ax, (stat, points) in zip(axes[:, 0], panels.items()):
        values = [p[0] for p in points]
        ax.plot(x, values, "o-", color="tab:blue")
        ax.scatter([i for i, p in enumerate(points) if p[2]], [p[0] for p in points if p[2]], color="red",
                   zorder=3, s=60, label="alarm")
        if any(p[1] is not None for p in points):
            ax.plot(x, [p[1] for p in points], "--", color="gray", label="threshold")
        ax.set_ylabel((ylabels or {}).get(stat, stat), fontsize=8)
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=7, loc="best")
    axes[-1, 0].set_xticks(x, names, rotation=30, ha="right", fontsize=8)
    fig.tight_layout()
    try:
        with atomic_file(path) as tmp:
            fig.savefig(tmp, dpi=110, format="png")
    finally:
        plt.close(fig)
    return path
