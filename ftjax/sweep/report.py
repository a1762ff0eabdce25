"""What a sweep ends in: results.csv (a row per trial), results.md (a row per setting: mean, std and n over
the seeds in sweep.group, next to trainable parameters, peak memory, tokens/s and minutes), plots/ (the metric
against each hyperparameter, validation curves, parameter importance, and for a one-parameter ablation the
metric with its spread across seeds), and best_config.py, the best setting as a runnable config."""

from __future__ import annotations

import csv
import io
import logging
import statistics
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ml_collections

from ftjax.io import write_json, write_text
from ftjax.sweep.config import also_names
from ftjax.sweep.study import retried

log = logging.getLogger("ftjax.sweep")
COSTS = ("trainable", "peak_memory_gb", "tokens_per_s", "minutes")


def trial_rows(study: Any, keys: list[str], also: Sequence[str] = ()) -> list[dict[str, Any]]:
    """One row per trial that ran (a trial replaced by its retry, or never started, is left out), with the
    sweep's `also` metrics after its value."""
    again = retried(study.trials)
    rows = []
    for t in study.trials:
        if t.number in again or "workdir" not in t.user_attrs or t.state.name in ("WAITING", "RUNNING"):
            continue
        rows.append({"trial": t.number, "state": t.state.name.lower(), **{k: t.params.get(k) for k in keys},
                     "value": t.value, **{m: t.user_attrs.get("also", {}).get(m) for m in also},
                     **{k: t.user_attrs.get(k) for k in ("steps", *COSTS)},
                     "workdir": t.user_attrs["workdir"]})
    return rows


def settings_table(rows: list[dict], keys: list[str], group: str,
                   also: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Completed trials grouped by their setting (every key but `group`): the metric's mean, std and n, the
    mean and std of each `also` metric, and the mean of each cost."""
    setting_keys = [k for k in keys if k != group]
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        if row["state"] == "complete":
            groups.setdefault(tuple(row[k] for k in setting_keys), []).append(row)
    out = []
    for setting, members in groups.items():
        values = [m["value"] for m in members]
        entry = dict(zip(setting_keys, setting)) | {
            "mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "n": len(values)}
        for name in also:
            found = [m[name] for m in members if m[name] is not None]
            entry[name] = statistics.fmean(found) if found else None
            entry[f"{name} std"] = statistics.stdev(found) if len(found) > 1 else None
        for cost in COSTS:
            found = [m[cost] for m in members if m[cost] is not None]
            entry[cost] = statistics.fmean(found) if found else None
        out.append(entry)
    return out


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.4g}"
    return "" if v is None else str(v)


def markdown(table: list[dict], metric: str) -> str:
    if not table:
        return "no completed trials yet\n"
    heads = [metric if k == "mean" else k for k in table[0]]
    lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    lines += ["| " + " | ".join(_cell(v) for v in row.values()) + " |" for row in table]
    return "\n".join(lines) + "\n"


def best(table: list[dict], direction: str) -> dict | None:
    if not table:
        return None
    return (max if direction == "maximize" else min)(table, key=lambda r: r["mean"])


def best_config_file(block: ml_collections.ConfigDict, setting: dict[str, Any], metric: str,
                     entry: dict[str, Any]) -> str:
    """A config file whose get_config() is the base config with the overrides and the best setting."""
    path, _, variant = block.base.partition(":")
    from ftjax.sweep.space import parse_overrides, settings_of

    settings = parse_overrides(block.overrides) | settings_of(setting)
    return (f'"""The best setting of a sweep ({block.sampler}, {block.space!r}): {metric} '
            f'{entry["mean"]:.4g} (std {entry["std"]:.3g} over {entry["n"]} run(s)).\n\n'
            f'    ftjax train --config=THIS_FILE --workdir=runs/best\n"""\n\n'
            "from ftjax.config import load_config_file, set_dotted\n\n"
            f"BASE, VARIANT = {str(Path(path).resolve())!r}, {variant or None!r}\n"
            f"SETTINGS = {settings!r}\n\n\n"
            "def get_config(arg=None):\n"
            "    config = load_config_file(BASE, arg or VARIANT)\n"
            "    for key, value in SETTINGS.items():\n"
            "        set_dotted(config, key, value)\n"
            "    return config\n")


def write_report(study: Any, block: ml_collections.ConfigDict, folder: Path, metric: str,
                 direction: str) -> list[Path]:
    """Write the tables, plots and best config; returns their paths."""
    from ftjax.sweep.space import parse_space

    keys = list(parse_space(block.space))
    extra = also_names(block)
    rows = trial_rows(study, keys, extra)
    table = settings_table(rows, keys, block.group, extra)
    buf = io.StringIO()
    fields = ["trial", "state", *keys, "value", *extra, "steps", *COSTS, "workdir"]
    writer = csv.DictWriter(buf, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    paths = [write_text(folder / "results.csv", buf.getvalue(), newline="")]
    counts = {s: sum(r["state"] == s for r in rows) for s in ("complete", "pruned", "fail")}
    header = (f"# Sweep {study.study_name}\n\n{block.sampler} over `{block.space}` on `{block.base}`"
              + (f" with `{block.overrides}`" if block.overrides else "") +
              f"; {metric} ({direction}) at each trial's best checkpoint, validation split. Trials: "
              f"{counts['complete']} complete, {counts['pruned']} pruned, {counts['fail']} failed.\n\n")
    paths.append(write_text(folder / "results.md", header + markdown(table, metric)))
    top = best(table, direction)
    if top is not None:
        setting = {k: top[k] for k in keys if k != block.group}
        paths.append(write_text(folder / "best_config.py", best_config_file(block, setting, metric, top)))
        paths.append(write_json(folder / "best.json", top | {"metric": metric, "setting": setting}))
    paths += plots(study, table, keys, block.group, metric, folder / "plots")
    return paths


def plots(study: Any, table: list[dict], keys: list[str], group: str, metric: str, out: Path) -> list[Path]:
    """Optuna's slice (metric vs each hyperparameter), validation curves and importance plots, and an
    error-bar plot of a one-parameter ablation; a plot the trials cannot support yet is skipped."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna.visualization.matplotlib as ov

    out.mkdir(parents=True, exist_ok=True)
    paths = []
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    makers = {"slice": lambda: ov.plot_slice(study, target_name=metric),
              "curves": lambda: ov.plot_intermediate_values(study),
              "importance": lambda: ov.plot_param_importances(study, target_name=metric)}
    for name, make in makers.items():
        if not complete or (name == "importance" and len(complete) < 2):
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Optuna marks its matplotlib plots experimental
                ax = make()
        except (ValueError, RuntimeError) as e:  # e.g. importance with one distinct value per parameter
            log.info("no %s plot: %s", name, e)
            continue
        first = ax.flat[0] if hasattr(ax, "flat") else ax
        if name == "curves":
            first.set_ylabel(f"validation {metric}")
        fig = first.figure
        fig.savefig(out / f"{name}.png", dpi=120, bbox_inches="tight")
        plt.close(fig)
        paths.append(out / f"{name}.png")
    varying = [k for k in keys if k != group and len({r[k] for r in table}) > 1]
    if len(varying) == 1 and table:
        key = varying[0]
        numeric = all(isinstance(r[key], (int, float)) and not isinstance(r[key], bool) for r in table)
        rows = sorted(table, key=lambda r: r[key]) if numeric else table  # choices keep the space's order
        means, stds = [r["mean"] for r in rows], [r["std"] for r in rows]
        fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(rows)), 4))
        if numeric:  # an ordered axis (rank, rows, rate): a line
            ax.errorbar(range(len(rows)), means, yerr=stds, fmt="o-", capsize=4)
        else:  # unordered choices (methods, linked settings): bars
            ax.bar_label(ax.bar(range(len(rows)), means, yerr=stds, capsize=4), fmt="%.4g", fontsize=8)
        ax.set_xticks(range(len(rows)), [str(r[key]) for r in rows])
        ax.set_xlabel(key)
        ax.set_ylabel(f"{metric} (mean ± std over {group})")
        ax.grid(alpha=0.3)
        fig.savefig(out / "ablation.png", dpi=120, bbox_inches="tight")
        plt.close(fig)
        paths.append(out / "ablation.png")
    return paths
