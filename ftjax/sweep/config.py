"""The `sweep` block of a sweep config (`configs/sweeps/*.py`): what every trial trains and what varies.

    base         the experiment config every trial trains (`configs/banking77.py:few`)
    overrides    KEY=VALUE items set in every trial (space.py), e.g. "train.steps=60 data.per_label=10"
    space        KEY=SPEC items that vary (space.py)
    sampler      grid (every point once) | random | tpe;  trials: how many (grid: 0 = every point);  seed
    metric, direction   what a trial is judged on, by its eval name (default: the base config's objective):
                 its validation figure at the trial's best checkpoint; pruning reads its validation curve
    also         more eval names, comma-separated, read at the same checkpoint and tabled beside the metric
                 (the other task of a mixture: "e2e_nlg/rouge_l,e2e_nlg/loss")
    pruner       none | median | halving (successive halving); prune_after: steps before a trial may be
                 pruned; startup_trials: finished trials before the median pruner prunes
    storage      an Optuna RDB URL ("" = sqlite:///WORKDIR/study.db): workers on several hosts sharing
                 one URL split the study's trials;  study: its name ("" = the sweep folder's name)
    group        the key whose values are seeds: tables average over it (mean, std, n)
"""

from __future__ import annotations

import ml_collections

from ftjax.config import at_least, one_of

SAMPLERS = ("grid", "random", "tpe")
PRUNERS = ("none", "median", "halving")


def default_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(dict(
        base="", overrides="", space="", sampler="grid", trials=0, seed=0, metric="", direction="", also="",
        pruner="none", prune_after=0, startup_trials=2, storage="", study="", group="train.seed"))


def preset(file: str, variant: str | None, **variants: dict) -> ml_collections.ConfigDict:
    """The locked sweep block a configs/sweeps/*.py file returns for `variant` (None: `default`), each variant
    given as the block's settings; an unknown variant is a one-line error naming the others."""
    name = variant or "default"
    if name not in variants:
        others = [v for v in variants if v != "default"]
        raise ValueError(f"unknown {file} variant {variant!r}; choose from: {', '.join(others) or '(none)'}")
    block = default_config()
    block.update(**variants[name])
    block.lock()
    return block


def also_names(block: ml_collections.ConfigDict) -> list[str]:
    """The eval names listed in `sweep.also`."""
    return [m.strip() for m in block.also.split(",") if m.strip()]


def check(block: ml_collections.ConfigDict) -> None:
    """One-line errors for the block itself (the keys it sets are checked against the base config by study.py)."""
    from ftjax.sweep.space import grid, parse_overrides, parse_space

    if not block.base:
        raise ValueError("sweep.base is empty: name the experiment config every trial trains "
                         "(e.g. configs/banking77.py:few)")
    one_of(block, "sweep", "sampler", SAMPLERS)
    one_of(block, "sweep", "pruner", PRUNERS)
    if block.direction:
        one_of(block, "sweep", "direction", ("maximize", "minimize"))
    at_least(block, "sweep", 0, "trials", "seed", "prune_after", "startup_trials")
    space = parse_space(block.space)
    if not space:
        raise ValueError("sweep.space is empty: give KEY=SPEC items (e.g. peft.rank=4|8|16)")
    overlap = sorted({k for key in space for k in key.split(",")} & parse_overrides(block.overrides).keys())
    if overlap:
        raise ValueError(f"sweep: {overlap[0]} is both in overrides and in space")
    if block.sampler == "grid":
        grid(space)
    elif block.trials == 0:
        raise ValueError(f"sweep.sampler={block.sampler} needs sweep.trials >= 1")
