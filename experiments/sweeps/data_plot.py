"""The data-size/quality ablation as one bar chart: each arm's LoRA trials (from the sweeps' results.csv, pooled
over seeds: mean bar, standard-deviation whisker, one dot a seed) beside the TF-IDF + LinearSVC baseline on the
same rows (runs/b77_few<N>[_noise<F>]_tfidf_svm.json).

    python experiments/sweeps/data_plot.py [--sweeps=runs/sweeps/data_size_cpu,runs/sweeps/data_size_cpu_s12]
                                           [--out=FILE.png]
"""

import csv
import json
import sys
from pathlib import Path

from absl import app, flags

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "experiments" / "banking77"))

from baseline import result_path  # noqa: E402

KEY = "data.per_label,data.label_noise"
flags.DEFINE_list("sweeps", [str(ROOT / "runs/sweeps/data_size_cpu"), str(ROOT / "runs/sweeps/data_size_cpu_s12")],
                  "data_size sweep folders whose complete trials are pooled per arm (seed 0; seeds 1 and 2)")
flags.DEFINE_string("out", str(ROOT / "experiments/sweeps/data_size_cpu.png"), "where the chart goes")
FLAGS = flags.FLAGS


def baseline_accuracy(per_label: int, noise: float) -> float:
    path = result_path("few", per_label, noise)
    if not path.exists():
        raise FileNotFoundError(f"{path}: run experiments/banking77/baseline.py --per_label={per_label} "
                                f"--label_noise={noise:g} first")
    return json.loads(path.read_text())["metrics"]["accuracy"]["value"]


def trials_by_arm(sweeps: list[str]) -> tuple[dict[str, list[float]], int]:
    """Each arm's accuracies over the complete trials of `sweeps`, in the order the arms first appear, and the
    trials' step count."""
    arms: dict[str, list[float]] = {}
    steps = set()
    for sweep in sweeps:
        path = Path(sweep) / "results.csv"
        if not path.exists():
            raise FileNotFoundError(f"{path}: run the sweep first (experiments/sweeps/run.sh data | data-seeds)")
        with open(path, newline="") as f:
            rows = [r for r in csv.DictReader(f) if r["state"] == "complete"]
        if not rows or KEY not in rows[0]:
            raise ValueError(f"{path}: no complete trials over {KEY}")
        for r in rows:
            arms.setdefault(r[KEY], []).append(float(r["value"]))
            steps.add(r["steps"])
    if len(steps) != 1:
        raise ValueError(f"{', '.join(sweeps)}: trials of different lengths ({', '.join(sorted(steps))} steps) "
                         "are not one ablation")
    return arms, int(steps.pop())


def main(argv: list[str]) -> None:
    del argv
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    arms, steps = trials_by_arm(FLAGS.sweeps)
    labels, svm = [], []
    for arm in arms:
        per_label, noise = arm.split(",")
        rows = int(per_label) * 77
        labels.append(f"{rows:,} rows\n" + (f"{float(noise):.0%} wrong labels" if float(noise) else "clean"))
        svm.append(baseline_accuracy(int(per_label), float(noise)))
    seeds = {len(v) for v in arms.values()}
    x, w = np.arange(len(arms)), 0.38
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    runs = [np.array(v) for v in arms.values()]
    bars = ax.bar(x - w / 2, [r.mean() for r in runs], w, yerr=[r.std(ddof=1) if len(r) > 1 else 0 for r in runs],
                  capsize=3, label=f"Gemma 3 270M + LoRA ({steps} steps, {'/'.join(map(str, sorted(seeds)))} seeds)")
    ax.bar_label(bars, fmt="%.1f", fontsize=8, padding=6)
    for i, r in enumerate(runs):
        ax.plot(np.full(len(r), x[i] - w / 2), r, "k.", markersize=3)
    ax.bar_label(ax.bar(x + w / 2, svm, w, label="TF-IDF + LinearSVC"), fmt="%.1f", fontsize=8)
    ax.set_xticks(x, labels)
    ax.set_ylabel("validation accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title("Banking77: data size and label quality at equal compute", fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(FLAGS.out, dpi=110)
    print(f"-> {FLAGS.out}")


if __name__ == "__main__":
    app.run(main)
