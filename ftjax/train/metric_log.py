"""The metric log of a run: per-step metrics to `metrics.jsonl`, TensorBoard event files and any MLflow / W&B
tracker (process 0 only).

On resume, lines logged after the restored step are dropped first, so the file reads as one clean run; a last
line cut short by a crash mid-write is dropped too (the checkpoint's step says what is kept).
"""

from __future__ import annotations

import json
import logging
import math
import os

import jax
import ml_collections

from ftjax.io import write_text
from ftjax.train.trackers import open_trackers
from ftjax.workdir import Workdir


class MetricWriter:
    """One interface for every sink: metrics.jsonl, TensorBoard, and the trackers `train.log_to` names
    (trackers.py: MLflow, W&B), given the run `config`."""

    def __init__(self, workdir: str | os.PathLike, resume_step: int = 0,
                 config: ml_collections.ConfigDict | None = None):
        self.enabled = jax.process_index() == 0
        wd = Workdir(workdir)
        self.path = wd.metrics
        self.trackers = []
        if not self.enabled:
            return
        if self.path.exists():
            keep = [line for line in _complete_lines(self.path) if json.loads(line).get("step", 0) <= resume_step]
            write_text(self.path, "".join(line + "\n" for line in keep))
        from tensorboardX import SummaryWriter

        self.tb = SummaryWriter(str(wd.tensorboard), purge_step=resume_step + 1 if resume_step else None)
        self.file = self.path.open("a", encoding="utf-8")
        self.trackers = open_trackers(wd, config) if config is not None else []

    def write(self, step: int, metrics: dict[str, float]) -> None:
        if not self.enabled:
            return
        row = {"step": step, **{k: _plain(v) for k, v in metrics.items()}}
        self.file.write(json.dumps(row) + "\n")
        self.file.flush()
        numbers = {k: v for k, v in row.items() if k != "step" and isinstance(v, (int, float))
                   and not isinstance(v, bool) and math.isfinite(v)}
        for k, v in numbers.items():
            self.tb.add_scalar(k, v, step)
        for tracker in self.trackers:
            tracker.log(step, numbers)

    def close(self) -> None:
        if self.enabled:
            self.file.close()
            self.tb.close()
            for tracker in self.trackers:
                tracker.close()


def _complete_lines(path) -> list[str]:
    """The file's JSON lines; an unparsable last line (a write cut short) is dropped with a warning, an
    unparsable line before it is an error naming file:line."""
    try:
        lines = [(n, line) for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if line.strip()]
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start}); move it aside to resume") from None
    out = []
    for i, (n, line) in enumerate(lines):
        try:
            json.loads(line)
        except ValueError:
            if i == len(lines) - 1:
                logging.getLogger("ftjax.train").warning("%s:%d: dropping a half-written last line", path, n)
                break
            raise ValueError(f"{path}:{n}: not valid JSON; repair or remove that line to resume") from None
        out.append(line)
    return out


def _plain(v):
    return v if isinstance(v, (str, bool, int)) else float(v)
