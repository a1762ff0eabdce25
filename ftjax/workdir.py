"""The layout of a run folder, shared by the trainer (which writes it) and evaluation (which reads it).

    config.json        the resolved config the run trains with
    metrics.jsonl      one JSON object per logged step
    summary.json       the final figures of the last completed `ftjax train`
    starts.jsonl       one line per `ftjax train` start: when, where, whether it resumed, what config changed
    train.lock         present while an `ftjax train` writes the folder (its host and pid)
    tensorboard/       TensorBoard event files
    checkpoints/       Orbax checkpoints (checkpoints.unreadable/ holds any set aside)
    eval/              `ftjax eval` results: <split>.json, <split>_predictions.jsonl, plots
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

import ml_collections


class Workdir:
    """The paths of one run folder (nothing is created)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.config = self.root / "config.json"
        self.metrics = self.root / "metrics.jsonl"
        self.summary = self.root / "summary.json"
        self.tensorboard = self.root / "tensorboard"
        self.checkpoints = self.root / "checkpoints"
        self.eval = self.root / "eval"
        self.starts = self.root / "starts.jsonl"
        self.lock = self.root / "train.lock"

    def trained(self) -> bool:
        """Whether any step was trained here: a checkpoint or a logged step."""
        steps = self.checkpoints.is_dir() and any(p.name.isdigit() for p in self.checkpoints.iterdir())
        return steps or (self.metrics.is_file() and self.metrics.stat().st_size > 0)


def read_config(workdir: str | os.PathLike) -> ml_collections.ConfigDict:
    """The config a workdir was trained with."""
    path = Workdir(workdir).config
    if not path.is_file():
        raise FileNotFoundError(f"{workdir} has no config.json (not an ftjax workdir)")
    return ml_collections.ConfigDict(json.loads(path.read_text()))


def is_ensemble(config: Mapping | ml_collections.ConfigDict) -> bool:
    """Whether a workdir's config is an ensemble's (`ftjax ensemble`): members to score, not a run to train or load."""
    return "ensemble" in config


def read_metrics(workdir: str | os.PathLike) -> list[dict]:
    """The rows of a workdir's metrics.jsonl (none when it has no file)."""
    path = Workdir(workdir).metrics
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
