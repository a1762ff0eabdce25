"""Monitoring over a series of files (one per day or week): each new file is compared or scored once, its
result appended to the history in the output folder, and the report redrawn from the whole history.

    OUT/drift.jsonl  OUT/drift.png        `ftjax monitor drift`: input drift against the reference
    OUT/quality.jsonl  OUT/quality.png    `ftjax monitor quality`: a task metric on labelled recent traffic
    OUT/report.md  OUT/report.html        both, with every file's figures

A file already in the history with the same bytes, reference, model and settings is not recomputed, so
rerunning the command with one more file (or after a kill) does only the new work.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable, Sequence
from pathlib import Path

from ftjax.io import file_sha256
from ftjax.monitor.drift import Reference, compare
from ftjax.monitor.report import append_history, read_history, series_plot, write_report


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _key(entry: dict) -> str:
    return json.dumps([entry["file_sha256"], entry["against"]], sort_keys=True)


def _latest(history: Sequence[dict], against: dict) -> list[dict]:
    """The history entries made against `against` (reference, model, settings), the newest per file name, in
    the order the files were first monitored."""
    mine: dict[str, dict] = {}
    for entry in history:
        if entry["against"] == against:
            mine.pop(entry["name"], None)
            mine[entry["name"]] = entry
    return list(mine.values())


def drift_series(files: Sequence[str], load: Callable[[str], tuple[list[str], list]], out: Path,
                 against: dict, reference: Callable[[], Reference]) -> list[dict]:
    """Compare each file's inputs with the reference; `load(file)` gives (texts, model inputs), `reference()`
    builds the reference (only when some file is new), `against` identifies reference, model and settings."""
    path = out / "drift.jsonl"
    done = {_key(e) for e in read_history(path)}
    ref = None
    for file in files:
        entry = {"name": Path(file).stem, "file": str(file), "file_sha256": file_sha256(file), "against": against}
        if _key(entry) in done:
            continue
        texts, inputs = load(file)
        ref = ref or reference()
        append_history(path, entry | {"when": _now(), **compare(ref, texts, inputs)})
    return _latest(read_history(path), against)


def drift_sections(entries: Sequence[dict]) -> tuple[list, dict]:
    """Report sections (one table: a row per file, a column per check) and the plot's panels."""
    names = [c["check"] for c in entries[0]["checks"]] if entries else []
    rows, panels = [], {n: [] for n in names}
    for e in entries:
        by = {c["check"]: c for c in e["checks"]}
        rows.append([e["name"], e["rows"], *[by[n]["value"] for n in names], e["alarm"]])
        for n in names:
            c = by[n]
            value = c.get("p_value", c["value"]) if n == "embedding_mmd" else c["value"]
            panels[n].append((value, c["threshold"], c["alarm"]))
    detail = []
    for e in entries:
        for c in e["checks"]:
            extra = {k: v for k, v in c.items() if k not in ("check", "value", "threshold", "alarm", "top_labels")}
            detail.append([e["name"], c["check"], c["value"], c["threshold"], c["alarm"],
                           ", ".join(f"{k}={v:.4g}" for k, v in extra.items() if isinstance(v, float))])
    text = ("Each statistic of the file's inputs against the reference; a threshold is calibrated on the "
            "reference at the file's size unless set (monitor.*). embedding_mmd alarms on its permutation "
            "p-value below monitor.alpha.")
    sections = [("Drift by file", text, ["file", "rows", *names, "verdict"], rows),
                ("Every check", "value, threshold, verdict and the test beside it", ["file", "check", "value",
                                                                                     "threshold", "verdict", "also"],
                 detail)]
    return sections, panels


def quality_series(files: Sequence[str], score: Callable[[str], dict], out: Path, against: dict,
                   baseline: float, max_drop: float) -> list[dict]:
    """Score each labelled file (`score(file)` -> {"value", "low", "high", "rows"}) and flag decay: the metric
    more than `max_drop` below `baseline`, the version's held-out score (`significant` when the whole 95%
    interval is below the baseline too)."""
    path = out / "quality.jsonl"
    done = {_key(e) for e in read_history(path)}
    for file in files:
        entry = {"name": Path(file).stem, "file": str(file), "file_sha256": file_sha256(file), "against": against}
        if _key(entry) in done:
            continue
        found = score(file)
        decay = found["value"] < baseline - max_drop
        append_history(path, entry | {"when": _now(), **found, "baseline": baseline, "max_drop": max_drop,
                                      "alarm": bool(decay), "significant": bool(decay and found["high"] < baseline)})
    return _latest(read_history(path), against)


def quality_sections(entries: Sequence[dict], metric: str) -> tuple[list, dict]:
    rows = [[e["name"], e["rows"], e["value"], f"[{e['low']:.4g}, {e['high']:.4g}]", e["baseline"],
             e["value"] - e["baseline"], e["alarm"], "yes" if e["significant"] else "no"] for e in entries]
    text = (f"{metric} on each labelled file against the version's held-out score; decay is flagged when it is "
            f"more than max_drop below it (significant: the whole 95% interval is below).")
    panels = {metric: [(e["value"], e["baseline"] - e["max_drop"], e["alarm"]) for e in entries]}
    return [("Quality by file", text, ["file", "rows", metric, "95% interval", "held-out", "change", "verdict",
                                       "significant"], rows)], panels


def write_monitor_report(out: Path) -> list[Path]:
    """report.md/html over both histories in `out` (each as of its newest entry's reference, model and
    settings), with drift.png and quality.png."""
    sections, images = [], []
    for name, build in (("drift", drift_sections), ("quality", quality_sections)):
        history = read_history(out / f"{name}.jsonl")
        if not history:
            continue
        entries = _latest(history, history[-1]["against"])
        part, panels = build(entries) if name == "drift" else build(entries, history[-1]["against"]["metric"])
        sections += part
        images.append(series_plot(out / f"{name}.png", [e["name"] for e in entries], panels))
    return write_report(out, "ftjax monitor", sections, images)
