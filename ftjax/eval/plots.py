"""Figures for evaluation reports (matplotlib, headless): confusion matrix, metric bars with intervals, loss
curves. Each function writes a PNG atomically and returns its path."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ftjax.io import atomic_file  # noqa: E402


def _save(fig, path: str | Path) -> Path:
    try:
        with atomic_file(path) as tmp:
            fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    finally:
        plt.close(fig)
    return Path(path)


def confusion_plot(block: Mapping, path: str | Path) -> Path:
    """Row-normalised confusion matrix (gold rows, predicted columns, 'other' last) with counts written in
    cells when the matrix is small enough to read them."""
    cm = np.asarray(block["confusion_matrix"], float)
    labels = list(block["labels"])
    rates = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    size = min(4 + 0.28 * len(labels), 30)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    im = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(labels) + 1), [*labels, block["other_column"]], rotation=90, fontsize=7)
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    if len(labels) <= 20:
        for (i, j), count in np.ndenumerate(cm):
            if count:
                ax.text(j, i, int(count), ha="center", va="center", fontsize=7,
                        color="white" if rates[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, fraction=0.03, label="share of gold row")
    return _save(fig, path)


def metric_bars(runs: Mapping[str, Mapping[str, Mapping[str, float]]], path: str | Path,
                title: str = "") -> Path:
    """Grouped bars, one group per metric, one bar per run, with bootstrap interval whiskers.
    runs: {run name: {metric: {"value", "low"?, "high"?}}}; metrics missing from a run are skipped."""
    names = list(runs)
    metrics = [m for m in dict.fromkeys(k for r in runs.values() for k in r)]
    fig, ax = plt.subplots(figsize=(max(5, 1.3 * len(metrics) * max(len(names), 1) / 2 + 2), 3.6))
    width = 0.8 / max(len(names), 1)
    for i, name in enumerate(names):
        xs, ys, err = [], [], [[], []]
        for j, m in enumerate(metrics):
            if m not in runs[name]:
                continue
            v = runs[name][m]
            xs.append(j + (i - (len(names) - 1) / 2) * width)
            ys.append(v["value"])
            err[0].append(v["value"] - v.get("low", v["value"]))
            err[1].append(v.get("high", v["value"]) - v["value"])
        ax.bar(xs, ys, width, yerr=err, capsize=3, label=name)
    ax.set_xticks(range(len(metrics)), metrics, rotation=30, ha="right")
    ax.set_ylabel("score (%)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def loss_curves(runs: Mapping[str, Sequence[Mapping]], path: str | Path) -> Path:
    """Training loss (thin) and validation loss (markers) against step, per run (metrics.jsonl rows)."""
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    for i, (name, rows) in enumerate(runs.items()):
        color = f"C{i}"
        train = [(r["step"], r["loss"]) for r in rows if "loss" in r]
        val = [(r["step"], r["val_loss"]) for r in rows if "val_loss" in r]
        if train:
            ax.plot(*zip(*train), color=color, lw=0.8, alpha=0.7, label=f"{name} train")
        if val:
            ax.plot(*zip(*val), color=color, marker="o", lw=1.5, label=f"{name} validation")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)
