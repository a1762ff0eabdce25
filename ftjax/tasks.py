"""Tasks and mixtures: named (source, preprocessing, format, head, loss, metrics) definitions that configs and
the command line refer to, in the spirit of seqio.

    c.tasks = tasks.blocks("banking77", "e2e_nlg")   # one config block per registered task
    c.mixture = tasks.mixture_config()               # rates: proportional | temperature | fixed
    ftjax train --config=configs/task.py:banking77+e2e_nlg --workdir=runs/mt

A task's block holds its own `data` and `head` blocks, `eval` overrides (its validation metrics and decoding)
and a fixed mixture `rate`. A run with a `tasks` block trains one backbone and one adapter on all of them, a
whole optimiser step from one task at a time, drawn at the mixture's rates, so packing, accumulation and
sharding work per task as in a single-task run; each classification task gets its own head, named after it,
and generation tasks share the language-model head. A run without a `tasks` block is the one task its `data`
and `head` blocks describe (named "": its metrics keep their plain names).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import ml_collections
import numpy as np

from ftjax.config import one_of
from ftjax.data import config as data_config
from ftjax.models import heads

NAME = re.compile(r"[a-z][a-z0-9_]*")
RATES = ("proportional", "temperature", "fixed")


@dataclasses.dataclass(frozen=True)
class Task:
    name: str
    description: str
    data: Mapping[str, Any]  # data-block values: preprocessing and format (columns, format, max_length, ...)
    source: Callable[[], Mapping[str, Any]] | None = None  # data-block values read when the block is built:
    # where the splits are (and a label set from a file)
    head: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    eval: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # eval-block overrides for this task


_REGISTRY: dict[str, Task] = {}


def register(task: Task) -> Task:
    """Add (or replace) a task under its name; returns it, so a module can `register(Task(...))` at import."""
    if not NAME.fullmatch(task.name):
        raise ValueError(f"task name {task.name!r}: use lower-case letters, digits and _, starting with a letter")
    _REGISTRY[task.name] = task
    return task


def get(name: str) -> Task:
    if name not in _REGISTRY:
        raise ValueError(f"unknown task {name!r}; registered: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def registered() -> dict[str, Task]:
    return dict(sorted(_REGISTRY.items()))


def block(name: str, source: bool = True) -> ml_collections.ConfigDict:
    """The config block of registered task `name`: data and head blocks at their defaults updated with the task's
    values, its eval overrides and a fixed-mixture rate of 1. `source=False` leaves the data files unset (and
    unread), for a config whose files come from the command line."""
    task = get(name)
    data = data_config.default_config()
    data.update(**task.data, **(task.source() if source and task.source else {}))
    head = heads.default_config()
    head.update(**task.head)
    return ml_collections.ConfigDict(dict(data=data, head=head, eval=dict(task.eval), rate=1.0))


def blocks(*names: str) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict({n: block(n) for n in names})


def mixture_config() -> ml_collections.ConfigDict:
    """How often each task supplies a step: `proportional` to its training examples, `temperature`-scaled
    (n ** (1 / temperature): above 1 evens the tasks out, as in T5), or `fixed` by each task's `rate`."""
    return ml_collections.ConfigDict(dict(rates="proportional", temperature=2.0))


def task_names(config: ml_collections.ConfigDict) -> list[str]:
    """The run's task names; [""] for a single-task run."""
    return list(config.get("tasks") or {}) or [""]


def pick_task(config: ml_collections.ConfigDict, name: str | None, workdir: str) -> str:
    """The task a command (eval, export) works on, "" in a single-task run: a multi-task run needs `name`
    (--task), a single-task run refuses one."""
    names = task_names(config)
    if name is None and names != [""]:
        raise ValueError(f"{workdir} is a multi-task run; name the task: --task={'|'.join(names)}")
    if name is not None and names == [""]:
        raise ValueError(f"{workdir} is a single-task run; drop --task")
    return name or ""


def prefix(name: str) -> str:
    """Metric-name prefix of a task: "banking77/" (so "banking77/val_accuracy"); none for a single task."""
    return f"{name}/" if name else ""


def task_config(config: ml_collections.ConfigDict, name: str) -> ml_collections.ConfigDict:
    """The run config as task `name` sees it: its data and head blocks (the head named after the task) and the
    run's eval block with the task's overrides; `config` itself for a single-task run."""
    if not name:
        return config
    tasks = config.get("tasks") or {}
    if name not in tasks:
        raise ValueError(f"the run has no task {name!r}; its tasks: {', '.join(tasks) or '(none: single task)'}")
    t = tasks[name]
    out = copy.deepcopy(config)
    out.unlock()
    del out["tasks"]
    out.data = copy.deepcopy(t.data)
    out.head = copy.deepcopy(t.head)
    out.head.name = name
    for key, value in t.get("eval", {}).items():
        if key not in out.eval:
            raise ValueError(f"tasks.{name}.eval.{key}: unknown eval key; known: {', '.join(out.eval)}")
        out.eval[key] = value
    return out


def task_configs(config: ml_collections.ConfigDict) -> dict[str, ml_collections.ConfigDict]:
    return {name: task_config(config, name) for name in task_names(config)}


def check(config: ml_collections.ConfigDict) -> None:
    """One-line errors for bad task names and a bad mixture block (each task's blocks are checked like a
    single run's, by the trainer)."""
    names = task_names(config)
    if names == [""]:
        return
    for name in names:
        if not NAME.fullmatch(name):
            raise ValueError(f"tasks.{name}: task names are lower-case letters, digits and _")
    mixture = config.get("mixture") or mixture_config()
    one_of(mixture, "mixture", "rates", RATES)
    if not mixture.temperature > 0:
        raise ValueError(f"mixture.temperature={mixture.temperature!r}: must be > 0")
    if mixture.rates == "fixed":
        rates = {n: config.tasks[n].rate for n in names}
        bad = [n for n, r in rates.items() if not r >= 0]
        if bad or not sum(rates.values()) > 0:
            raise ValueError(f"mixture.rates=fixed needs tasks.NAME.rate >= 0, not all 0; got {rates}")


def mixture_rates(config: ml_collections.ConfigDict, sizes: Mapping[str, int]) -> dict[str, float]:
    """Each task's probability of supplying a step, from its training-example count `sizes[name]`."""
    names = list(sizes)
    if len(names) == 1:
        return {names[0]: 1.0}
    mixture = config.get("mixture") or mixture_config()
    if mixture.rates == "fixed":
        weights = np.array([config.tasks[n].rate for n in names], float)
    elif mixture.rates == "temperature":
        weights = np.array([sizes[n] for n in names], float) ** (1.0 / mixture.temperature)
    else:
        weights = np.array([sizes[n] for n in names], float)
    return dict(zip(names, (weights / weights.sum()).tolist()))


def task_for_step(rates: Mapping[str, float], seed: int, step: int) -> str:
    """The task that supplies optimiser step `step`: a draw from `rates` seeded by (seed, step), so a resumed run
    draws the same sequence without saving any state."""
    names = sorted(rates)  # the draw does not depend on the order the tasks were listed in
    if len(names) == 1:
        return names[0]
    return names[int(np.random.default_rng([seed, step]).choice(len(names), p=[rates[n] for n in names]))]


# --- built-in tasks: the data sets in ../shared/data (or $BANKING77_DIR, $E2E_DIR) --------------------------------

def _banking77_files() -> dict:
    folder = Path(os.environ.get("BANKING77_DIR", "../shared/data/banking77"))
    path = folder / "categories.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: set BANKING77_DIR to the folder with train.csv and categories.json")
    return dict(train=str(folder / "train.csv"), labels=",".join(json.loads(path.read_text())))


def _e2e_files() -> dict:
    folder = Path(os.environ.get("E2E_DIR", "../shared/data/e2e"))
    return dict(train=str(folder / "devset.csv"))


# validation: a 10% holdout of the training file, stratified by label (the same rows for every seed)
BANKING77 = dict(validation="holdout:0.1", columns="label=category", format="classification", max_length=64)
register(Task("banking77", "Banking77 intents (text,category): a classification head over the 77 intents",
              BANKING77 | dict(pack=True), _banking77_files, head=dict(type="classification", label_smoothing=0.1)))
register(Task("banking77_generate", "Banking77 intents, the label generated as text by the LM head", BANKING77,
              _banking77_files,
              # an output that is no intent becomes the likeliest intent: +0.3 and +0.7 accuracy on 2 seeds' holdouts
              # (experiments/banking77/README.md)
              eval=dict(constrain="labels")))
register(Task("e2e_nlg", "E2E NLG (mr,ref): a restaurant description from a meaning representation",
              dict(validation="holdout:0.1", columns="data=mr,text=ref", format="data_to_text", max_length=128),
              _e2e_files,
              # of the 4 beams, the one with the fewest slot errors: 4-5 points fewer slot errors, BLEU -1.5 (not
              # significant; experiments/e2e_nlg/README.md)
              eval=dict(max_new_tokens=64, num_beams=4, length_penalty=0.9, no_repeat_ngram_size=4, rerank="slots")))
