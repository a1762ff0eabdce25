"""Ensembles: several classification- or regression-head runs of one task scored as one model, by the mean of
their class probabilities (or of their values).

    ftjax ensemble --workdir=runs/b77_ens --members=runs/b77_s0,runs/b77_s1,runs/b77_s2
    ftjax eval --workdir=runs/b77_ens --split=validation        # or --config.data.test=FILE, as for any run

The ensemble's folder holds only config.json: the first member's config with an `ensemble` block naming the
members and the checkpoint to read from each. Members load one at a time, so memory holds one model, and the
cost is one forward pass per member. Generated text has no per-class probabilities to average, so language-model
head runs are refused.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np
from tqdm import tqdm

from ftjax.data.config import label_set
from ftjax.io import write_json
from ftjax.models.heads import classify, head_name, head_type
from ftjax.tasks import task_names
from ftjax.workdir import Workdir, is_ensemble, read_config

# What every member must share for their outputs to mean the same thing.
SHARED = {"model.path": "base model (and tokenizer)", "data.format": "data format", "head.type": "head type",
          "data.max_length": "maximum length"}


def _value(config: ml_collections.ConfigDict, dotted: str):
    node = config
    for key in dotted.split("."):
        node = node.get(key) if node is not None else None
    return node


def make_ensemble(workdir: str | os.PathLike, members: Sequence[str], checkpoint: str = "best") -> Path:
    """Write `workdir`/config.json for an ensemble of `members` (training workdirs of one task, each read at
    `checkpoint`); everything that can refuse is checked first, and an existing run is never overwritten."""
    if len(members) < 2:
        raise ValueError("an ensemble needs at least two member runs (--members=RUN_A,RUN_B,...)")
    if len(set(members)) != len(members):
        raise ValueError(f"a member is listed twice: {', '.join(members)}")
    if checkpoint not in ("best", "last") and not str(checkpoint).isdigit():
        raise ValueError(f"--checkpoint={checkpoint!r}: use best, last or a step number")
    out = Workdir(workdir)
    if out.config.exists():
        raise ValueError(f"{workdir} holds a run already; choose a new --workdir for the ensemble")
    configs = [read_config(m) for m in members]  # a folder that is no run fails here
    for member, config in zip(members, configs):
        if is_ensemble(config):
            raise ValueError(f"{member} is an ensemble itself; list its members instead")
        if task_names(config) != [""]:
            raise ValueError(f"{member} is a multi-task run; an ensemble's members are single-task runs")
        if head_type(config) not in ("classification", "regression"):
            raise ValueError(f"{member} predicts with its {head_type(config)} head; an ensemble averages "
                             "classification or regression heads (generated text has no probabilities to average)")
        if not Workdir(member).trained():
            raise ValueError(f"{member} has no checkpoints yet")
        if str(checkpoint).isdigit() and not (Workdir(member).checkpoints / str(checkpoint)).is_dir():
            raise ValueError(f"{member} has no checkpoint at step {checkpoint}")
    first = configs[0]
    for member, config in zip(members[1:], configs[1:]):
        for key, what in SHARED.items():
            if _value(config, key) != _value(first, key):
                raise ValueError(f"{member} differs from {members[0]} in its {what} ({key}: "
                                 f"{_value(config, key)!r} vs {_value(first, key)!r})")
        if label_set(config.data) != label_set(first.data):
            raise ValueError(f"{member} has another label set than {members[0]} (data.labels)")
    config = first.to_dict() | {"ensemble": {"members": list(members), "checkpoint": str(checkpoint)}}
    return write_json(out.config, config)


# (workdir, checkpoint) -> (model, tokenizer, config, step): the trainer's `load_run`, passed in by the command
# (evaluation does not import the trainer).
Loader = Callable[[str, str], tuple[Any, Any, ml_collections.ConfigDict, int]]


class Ensemble:
    """The members of an ensemble config, loaded one at a time by `load` when asked for outputs."""

    def __init__(self, config: ml_collections.ConfigDict, load: Loader):
        self.load = load
        self.members = list(config.ensemble.members)
        self.checkpoint = config.ensemble.checkpoint
        self.head = head_name(config)
        self.regression = head_type(config) == "regression"
        self.labels: list[str] | None = None  # the members' head labels, once one is loaded
        self.steps: list[int] = []  # the checkpoint step read from each member

    def outputs(self, prompts: Sequence[Sequence[int]], batch_size: int, pad_id: int) -> np.ndarray:
        """The mean over members of each prompt's class probabilities [n, labels] (regression: values [n, 1])."""
        total, self.steps = None, []
        for member in tqdm(self.members, desc="ensemble members", unit="run", leave=False):
            model, _, _, step = self.load(member, self.checkpoint)
            labels = None if self.regression else list(model.heads[self.head].labels)
            if self.labels is not None and labels != self.labels:
                raise ValueError(f"{member}'s head has other labels than {self.members[0]}'s")
            self.labels = labels
            out = classify(model, prompts, batch_size, pad_id, self.head)
            out = out if self.regression else np.asarray(jax.nn.softmax(out.astype(np.float32), axis=-1))
            total = out if total is None else total + out
            self.steps.append(step)
            del model
        return total / len(self.members)

    def describe(self) -> dict:
        return {"members": self.members, "checkpoint": self.checkpoint, "steps": self.steps,
                "combined_by": "mean value" if self.regression else "mean class probability"}
