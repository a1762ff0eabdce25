"""The mixture-rate ablation over several sweep studies (one per seed range), as one table and one plot:

    python experiments/multitask/mixture_table.py runs/sweeps/mixture_rates_cpu runs/sweeps/mixture_rates_cpu_seed2 \
        --plot=experiments/multitask/mixture_rates_cpu.png \
        --eval=eval/e2e_nlg/validation.json:e2e_bleu,e2e_rouge_l,slot_error_rate

Reads each folder's results.csv (written by `ftjax sweep`), groups the completed trials by every swept key but
train.seed, and prints per setting the mean and sd over the seeds of the sweep's metric and of each `also`
column, with the costs' means (ftjax.sweep.report's grouping, across studies). --eval=FILE:NAME,... adds metrics
of an `ftjax eval` each trial had afterwards (FILE relative to the trial's workdir; every trial must have it).
The plot shows every seed's value and the mean of each setting.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

from ftjax.sweep.report import COSTS, settings_table
from ftjax.sweep.space import parse_value

FIXED = {"trial", "state", "value", "steps", "workdir", *COSTS}


def read_rows(folders: list[Path]) -> tuple[list[dict], list[str], list[str], str]:
    """(completed trial rows with numbers parsed, swept keys, `also` columns, the metric's name) of every
    folder's results.csv (and best.json, which names the metric); the folders must hold the same sweep's columns
    and metric."""
    if len({f.resolve() for f in folders}) != len(folders):
        raise SystemExit("a folder is given twice")
    rows, columns, metrics = [], None, set()
    for folder in folders:
        path = folder / "results.csv"
        if not path.is_file():
            raise SystemExit(f"{path}: no such file (run `ftjax sweep` on {folder} first)")
        with path.open() as f:
            reader = csv.DictReader(f)
            if columns is not None and reader.fieldnames != columns:
                raise SystemExit(f"{path}: columns {reader.fieldnames} differ from the first folder's {columns}")
            columns = reader.fieldnames
            rows += [{k: parse_value(v) if v else None for k, v in row.items()} | {"workdir": folder / row["workdir"]}
                     for row in reader if row["state"] == "complete"]
        best = folder / "best.json"
        metrics.add(json.loads(best.read_text())["metric"] if best.is_file() else "value")
    if len(metrics) > 1:
        raise SystemExit(f"the folders judge different metrics: {', '.join(sorted(metrics))}")
    after_value = columns[columns.index("value") + 1:]
    also = after_value[:after_value.index("steps")]
    keys = [c for c in columns[:columns.index("value")] if c not in FIXED]
    return rows, keys, also, metrics.pop()


def add_eval_metrics(rows: list[dict], spec: str) -> list[str]:
    """Adds to each row the metrics `spec` (FILE:NAME,...) names from the trial's `ftjax eval` results; returns
    their names, the new columns."""
    file, _, names = spec.rpartition(":")
    if not file or not names:
        raise SystemExit(f"--eval={spec}: expected FILE:NAME[,NAME...], e.g. eval/validation.json:bleu")
    columns = names.split(",")
    for column in columns:
        if column in rows[0]:
            raise SystemExit(f"--eval={spec}: {column!r} is a column already")
        for row in rows:
            path = row["workdir"] / file
            if not path.is_file():
                raise SystemExit(f"{path}: no such file (run `ftjax eval --workdir={row['workdir']} ...` first)")
            metrics = json.loads(path.read_text())["metrics"]
            if column not in metrics:
                raise SystemExit(f"{path}: no metric {column!r} (it has {', '.join(sorted(metrics))})")
            row[column] = metrics[column]["value"]
    return columns


def plot(rows: list[dict], table: list[dict], key: str, metric: str, also: list[str], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [str(t[key]) for t in table]
    columns = ["value", *also]
    ncols = min(3, len(columns))  # rows of three panels stay readable
    nrows = -(-len(columns) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.5 * ncols, 3.4 * nrows), squeeze=False)
    for ax in axes.flat[len(columns):]:
        ax.set_visible(False)
    for ax, column in zip(axes.flat, columns):
        for x, setting in enumerate(table):
            values = [r[column] for r in rows if r[key] == setting[key] and r[column] is not None]
            ax.scatter([x] * len(values), values, color="tab:blue", alpha=0.6, zorder=3)
            mean = setting["mean" if column == "value" else column]  # settings_table's mean over the seeds
            ax.hlines(mean, x - 0.25, x + 0.25, color="black", zorder=4)
            ax.annotate(f"{mean:.4g}", (x + 0.28, mean), va="center", fontsize=8)
        ax.set_xticks(range(len(names)), names)
        ax.set_xlim(-0.5, len(names) - 0.2)
        ax.set_xlabel(key)
        ax.set_ylabel(f"{metric if column == 'value' else column} (validation)")
        ax.grid(alpha=0.3)
    seeds = sorted({r["train.seed"] for r in rows})
    fig.suptitle(f"each dot one seed (seeds {', '.join(map(str, seeds))}), each bar their mean")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folders", nargs="+", type=Path, help="sweep workdirs (each with results.csv)")
    ap.add_argument("--plot", type=Path, help="write the plot here (PNG)")
    ap.add_argument("--eval", action="append", default=[], metavar="FILE:NAME[,NAME...]",
                    help="metrics of each trial's `ftjax eval` results (FILE relative to the trial's workdir)")
    args = ap.parse_args()
    rows, keys, also, metric = read_rows(args.folders)
    if not rows:
        raise SystemExit("no completed trials in " + ", ".join(map(str, args.folders)))
    for spec in args.eval:
        also += add_eval_metrics(rows, spec)
    table = settings_table(rows, keys, "train.seed", also)  # in grid order: the metric may be one to minimise
    setting_keys = [k for k in keys if k != "train.seed"]
    print("| " + " | ".join([*setting_keys, metric, *also, "n", "minutes"]) + " |")
    print("|" + "---|" * (len(setting_keys) + len(also) + 3))
    for t in table:
        cells = [str(t[k]) for k in setting_keys] + [f"{t['mean']:.2f} ± {t['std']:.2f}"]
        cells += [f"{t[m]:.3f} ± {t[m + ' std'] or 0:.3f}" for m in also] + [str(t["n"]), f"{t['minutes']:.1f}"]
        print("| " + " | ".join(cells) + " |")
    if args.plot:
        if len(setting_keys) != 1:
            raise SystemExit(f"--plot draws one swept key besides the seed; these studies sweep {setting_keys}")
        plot(rows, table, setting_keys[0], metric, also, args.plot)
        print(f"wrote {args.plot}")


if __name__ == "__main__":
    main()
