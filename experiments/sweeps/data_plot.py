"""The data-size/quality ablation as one bar chart: each arm's LoRA trial (from the sweep's results.csv) beside
the TF-IDF + LinearSVC baseline on the same rows (runs/b77_few<N>[_noise<F>]_tfidf_svm.json).

    python experiments/sweeps/data_plot.py [--sweep=runs/sweeps/data_size_cpu] [--out=FILE.png]
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
flags.DEFINE_string("sweep", str(ROOT / "runs/sweeps/data_size_cpu"), "the data_size sweep folder")
flags.DEFINE_string("out", str(ROOT / "experiments/sweeps/data_size_cpu.png"), "where the chart goes")
FLAGS = flags.FLAGS


def baseline_accuracy(per_label: int, noise: float) -> float:
    path = result_path("few", per_label, noise)
    if not path.exists():
        raise FileNotFoundError(f"{path}: run experiments/banking77/baseline.py --per_label={per_label} "
                                f"--label_noise={noise:g} first")
    return json.loads(path.read_text())["metrics"]["accuracy"]["value"]


def main(argv: list[str]) -> None:
    del argv
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    with open(Path(FLAGS.sweep) / "results.csv", newline="") as f:
        arms = [r for r in csv.DictReader(f) if r["state"] == "complete"]
    if not arms or KEY not in arms[0]:
        raise ValueError(f"{FLAGS.sweep}/results.csv: no complete trials over {KEY}")
    labels, lora, svm = [], [], []
    for r in arms:
        per_label, noise = r[KEY].split(",")
        rows = int(per_label) * 77
        labels.append(f"{rows:,} rows\n" + (f"{float(noise):.0%} wrong labels" if float(noise) else "clean"))
        lora.append(float(r["value"]))
        svm.append(baseline_accuracy(int(per_label), float(noise)))
    x, w = np.arange(len(arms)), 0.38
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    for offset, values, name in ((-w / 2, lora, f"Gemma 3 270M + LoRA ({arms[0]['steps']} steps)"),
                                 (w / 2, svm, "TF-IDF + LinearSVC")):
        bars = ax.bar(x + offset, values, w, label=name)
        ax.bar_label(bars, fmt="%.1f", fontsize=8)
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
