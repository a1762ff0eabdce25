"""The `objective` block: what a run is for, as a measurable target, judged by `ftjax train` and `ftjax eval`.

    metric      the metric that decides, by its eval name (accuracy, macro_f1, bleu, rouge_l, exact_match, mse,
                loss, ...; TASK/NAME in a multi-task run); "" = the early-stopping metric. Training judges its
                validation figure (val_NAME, the same scale as `ftjax eval` reports), eval the split it scores.
    direction   maximize | minimize
    target      the figure to reach (nan = none: report the value only)
    budget_minutes, budget_memory_gb   the cost the run may take (0 = no limit), judged by training

A report says the value (with its 95% interval where one was measured), whether the target is met, and whether
the whole interval is past it (`confident`): a point estimate past the target with an interval straddling it is
not yet evidence. Training reports the value at the best checkpoint (what eval and export load) without an
interval; `ftjax eval --split=validation` adds it.
"""

from __future__ import annotations

import math
from typing import Any

import ml_collections

from ftjax.config import at_least, one_of

DIRECTIONS = ("maximize", "minimize")


def default_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(dict(metric="", direction="maximize", target=float("nan"), budget_minutes=0.0,
                                          budget_memory_gb=0.0))


def check(block: ml_collections.ConfigDict) -> None:
    one_of(block, "objective", "direction", DIRECTIONS)
    if not isinstance(block.target, (int, float)) or isinstance(block.target, bool) or math.isinf(block.target):
        raise ValueError(f"objective.target={block.target!r}: must be a finite number (or nan for none)")
    at_least(block, "objective", 0, "budget_minutes", "budget_memory_gb")
    if not is_weighted(block.metric) and block.metric.split("/")[-1].startswith("val_"):
        raise ValueError(f"objective.metric={block.metric!r}: name the metric as eval reports it, without val_ "
                         f"(training judges its val_ figure)")


def objective_block(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """config.objective with defaults filled (configs and workdirs written before the block existed have none),
    its metric defaulting to the early-stopping metric and the direction to its mode."""
    es = config.train.early_stopping if "train" in config else None
    block = default_config().to_dict() | dict(config.get("objective", {}))
    if not block["metric"] and es is not None:
        block["metric"] = validation_to_eval(es.metric)
        block["direction"] = "maximize" if es.mode == "max" else "minimize"
    return ml_collections.ConfigDict(block)


def is_weighted(name: str) -> bool:
    """A weighted sum of metrics (`0.5*banking77/val_accuracy+...`, early stopping's) rather than one metric."""
    return "*" in name or "+" in name


def validation_to_eval(name: str) -> str:
    """banking77/val_accuracy -> banking77/accuracy (a weighted sum keeps its name)."""
    if is_weighted(name):
        return name
    task, _, metric = name.rpartition("/")
    metric = metric.removeprefix("val_")
    return f"{task}/{metric}" if task else metric


def validation_name(metric: str) -> str:
    """The training log's name of an eval metric: banking77/accuracy -> banking77/val_accuracy."""
    if is_weighted(metric):  # logged under its own name
        return metric
    task, _, name = metric.rpartition("/")
    return f"{task}/val_{name}" if task else f"val_{name}"


def judge(block: ml_collections.ConfigDict, value: float | None, low: float | None = None,
          high: float | None = None, *, split: str, minutes: float | None = None,
          memory_gb: float | None = None) -> dict[str, Any]:
    """The objective report for a measured `value` (None: not measured here) and its interval."""
    target = block.target if not math.isnan(block.target) else None
    out: dict[str, Any] = {"metric": block.metric, "split": split, "direction": block.direction, "target": target,
                           "value": value}
    if low is not None and high is not None:
        out |= {"low": low, "high": high}
    if value is not None and target is not None:
        past = (lambda v: v >= target) if block.direction == "maximize" else (lambda v: v <= target)
        out["met"] = bool(past(value))
        if "low" in out:
            out["confident"] = bool(past(low if block.direction == "maximize" else high))
    budget = {}
    if block.budget_minutes and minutes is not None:
        budget["minutes"] = {"used": minutes, "limit": block.budget_minutes, "met": minutes <= block.budget_minutes}
    if block.budget_memory_gb and memory_gb is not None:
        budget["memory_gb"] = {"used": memory_gb, "limit": block.budget_memory_gb,
                               "met": memory_gb <= block.budget_memory_gb}
    if budget:
        out["budget"] = budget
    return out


def describe(report: dict[str, Any]) -> str:
    """One line: `objective accuracy >= 93 on validation: 85.6 [83.4, 87.8]: not met`."""
    sign = ">=" if report["direction"] == "maximize" else "<="
    goal = f"{report['metric']} {sign} {report['target']:g}" if report["target"] is not None else \
        f"{report['metric']} ({report['direction']})"
    if report["value"] is None:
        return f"objective {goal} on {report['split']}: not measured"
    text = f"objective {goal} on {report['split']}: {report['value']:.4g}"
    if "low" in report:
        text += f" [{report['low']:.4g}, {report['high']:.4g}]"
    if "met" in report:
        text += ": met" if report["met"] else ": not met"
        if "low" in report:
            maximize = report["direction"] == "maximize"
            near = report["high"] if maximize else report["low"]
            if report["met"]:
                text += " (the whole interval is past it)" if report["confident"] else \
                    " (but the interval reaches back across it)"
            else:
                reaches = near >= report["target"] if maximize else near <= report["target"]
                text += " (the interval reaches it)" if reaches else " (the whole interval falls short)"
    for name, b in report.get("budget", {}).items():
        text += f"; {name} {b['used']:.3g} of {b['limit']:g}" + ("" if b["met"] else " (over budget)")
    return text
