"""Early stopping on a validation metric: stop after `patience` evaluations without an improvement larger
than `min_delta`; patience 0 never stops. Its state goes into checkpoints so a resumed run counts on.

The metric is one name (`val_loss`, `banking77/val_accuracy`) or a weighted sum of names, e.g.
`0.5*banking77/val_accuracy+0.5*e2e_nlg/val_rouge_l` (terms `[WEIGHT*]NAME` joined by `+`; a weight may be
negative, to mix a lower-is-better metric into a higher-is-better sum)."""

from __future__ import annotations

import math
import re

from ftjax.objective import is_weighted

TERM = re.compile(r"\s*(?:(-?[0-9.]+(?:e-?[0-9]+)?)\s*\*\s*)?([A-Za-z0-9_/.-]+)\s*")


def weighted_terms(metric: str) -> list[tuple[float, str]]:
    """[(weight, name)] of a weighted-sum metric; a ValueError names a malformed term."""
    terms = []
    for part in metric.split("+"):
        m = TERM.fullmatch(part)
        if not m:
            raise ValueError(f"train.early_stopping.metric={metric!r}: cannot read the term {part.strip()!r}; "
                             "write WEIGHT*NAME+WEIGHT*NAME")
        terms.append((float(m.group(1)) if m.group(1) else 1.0, m.group(2)))
    return terms


def weighted_sum(metric: str, metrics: dict[str, float]) -> float:
    return sum(w * metrics[name] for w, name in weighted_terms(metric))


class EarlyStopping:
    def __init__(self, metric: str, mode: str, patience: int, min_delta: float = 0.0):
        if mode not in ("min", "max"):
            raise ValueError(f"train.early_stopping.mode must be 'min' or 'max', got {mode!r}")
        if patience < 0 or min_delta < 0:
            raise ValueError("train.early_stopping.patience and min_delta must be >= 0")
        self.metric, self.mode, self.patience, self.min_delta = metric, mode, patience, min_delta
        self.best = math.inf if mode == "min" else -math.inf
        self.best_step: int | None = None
        self.bad_evals = 0

    def update(self, step: int, metrics: dict[str, float]) -> bool:
        """Record an evaluation; True when it is the new best."""
        if self.metric not in metrics:
            raise ValueError(f"train.early_stopping.metric {self.metric!r} is not computed; "
                             f"available: {', '.join(sorted(metrics))}")
        value = metrics[self.metric]
        gain = (self.best - value) if self.mode == "min" else (value - self.best)
        if gain > self.min_delta or self.best_step is None:
            self.best, self.best_step, self.bad_evals = value, step, 0
            return True
        self.bad_evals += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.patience > 0 and self.bad_evals >= self.patience

    def state(self) -> dict:
        return {"best": self.best, "best_step": self.best_step, "bad_evals": self.bad_evals}

    def load(self, state: dict) -> None:
        self.best, self.best_step, self.bad_evals = state["best"], state["best_step"], state["bad_evals"]
