"""The sweep's study and the worker loop: `sweep(block, folder)`.

The study lives in Optuna's storage (sqlite:///FOLDER/study.db unless sweep.storage names an RDB URL); every
trial's workdir is FOLDER/trials/NNNN and its log FOLDER/logs/NNNN.log. Grid and random sweeps plan all their
trials when the study is created (queued in the storage), so workers on any number of hosts pop distinct
trials; a TPE sweep samples each trial from the finished ones. A trial whose worker died (killed, preempted,
its host lost) is queued again with the same parameters and workdir, so it resumes from its last checkpoint:
at once when the worker was on this host and its process is gone, after the heartbeat's grace period otherwise.
Rerunning the sweep command therefore resumes the study without rerunning finished trials.
"""

from __future__ import annotations

import contextlib
import copy
import fcntl
import logging
import os
import socket
import time
import warnings
from pathlib import Path
from typing import Any

import ml_collections

from ftjax.config import load_config_file, set_dotted
from ftjax.objective import objective_block, validation_name
from ftjax.sweep import config as sweep_config
from ftjax.sweep import trial as trials
from ftjax.sweep.space import Param, grid, parse_overrides, parse_space, settings_of
from ftjax.train.guard import alive

log = logging.getLogger("ftjax.sweep")
HEARTBEAT_S, GRACE_S = 60, 300  # another host's trial is taken for dead after GRACE_S without a heartbeat
PLANNED = "planned"  # user attr of a queued trial of a grid or random sweep


def base_config(block: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The base config with the sweep's overrides and every parameter's bounds set on copies of it, and checked
    as `ftjax train` checks it: a bad key or value stops the sweep before any trial starts."""
    from ftjax.train.config import check

    path, _, variant = block.base.partition(":")
    config = load_config_file(path, variant or None)
    space = parse_space(block.space)
    for key, value in parse_overrides(block.overrides).items():
        _set(config, key, value, "overrides")
    for p in space.values():
        for value in p.bounds():
            trial_config = copy.deepcopy(config)  # locked: an unknown key is an error
            for key, v in settings_of({p.key: int(value) if p.kind == "int" else value}).items():
                _set(trial_config, key, v, "space")
            check(trial_config)
    return config


def _set(config: ml_collections.ConfigDict, key: str, value: Any, where: str) -> None:
    try:
        set_dotted(config, key, value)
    except (KeyError, AttributeError):
        raise ValueError(f"sweep.{where}: {key} is not a key of the base config") from None
    except TypeError as e:
        raise ValueError(f"sweep.{where}: {key}={value!r}: {e}") from None


def goal(block: ml_collections.ConfigDict, config: ml_collections.ConfigDict) -> tuple[str, str]:
    """(metric, direction) the trials are judged on: the sweep's, or the base config's objective."""
    objective = objective_block(config)
    metric, direction = block.metric or objective.metric, block.direction or objective.direction
    _check_logged(config, "metric", metric)
    return metric, direction


def also(block: ml_collections.ConfigDict, config: ml_collections.ConfigDict) -> list[str]:
    """The eval names of `sweep.also`, each one that training logs."""
    names = sweep_config.also_names(block)
    for name in names:
        _check_logged(config, "also", name)
    return names


def _check_logged(config: ml_collections.ConfigDict, key: str, metric: str) -> None:
    from ftjax.train.config import logged_metrics

    if validation_name(metric) not in [*logged_metrics(config), config.train.early_stopping.metric]:
        raise ValueError(f"sweep.{key}={metric!r}: training does not log {validation_name(metric)}; choose from "
                         f"{', '.join(logged_metrics(config))} (or add it to eval.metrics)")


def plan(block: ml_collections.ConfigDict, space: dict[str, Param]) -> list[dict[str, Any]]:
    """Every trial of a grid or random sweep, decided up front (random: drawn from the seed)."""
    if block.sampler == "grid":
        points = grid(space)
        return points[:block.trials] if block.trials else points
    import optuna

    draw = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=block.seed))
    return [draw.ask({k: p.distribution() for k, p in space.items()}).params for _ in range(block.trials)]


@contextlib.contextmanager
def folder_lock(folder: Path):
    """Exclusive while one worker creates, plans or takes a trial from the study (workers share the folder)."""
    with (folder / ".study.lock").open("w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def open_study(block: ml_collections.ConfigDict, folder: Path, direction: str):
    """(study, storage): created and planned by the first worker, loaded by the others; a folder or storage
    that holds a different sweep under the name is an error."""
    import optuna

    # the heartbeat is Optuna's experimental API, and meant for study.optimize: this loop records it itself
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = block.storage or f"sqlite:///{(folder / 'study.db').resolve()}"
    name = block.study or folder.resolve().name
    sampler = (optuna.samplers.TPESampler(seed=block.seed) if block.sampler == "tpe"
               else optuna.samplers.RandomSampler(seed=block.seed))  # grid and random trials come from the plan
    pruner = {"none": optuna.pruners.NopPruner(),
              "median": optuna.pruners.MedianPruner(n_startup_trials=block.startup_trials,
                                                    n_warmup_steps=block.prune_after),
              "halving": optuna.pruners.SuccessiveHalvingPruner(min_resource=block.prune_after or "auto")
              }[block.pruner]
    defining = {k: block[k] for k in ("base", "overrides", "space", "sampler", "trials", "seed", "metric")}
    with folder_lock(folder):  # opening a new storage creates its tables: one worker at a time
        storage = optuna.storages.RDBStorage(url, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S,
                                             heartbeat_stale_trial_callback=requeue)
        study = optuna.create_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner,
                                    direction=direction, load_if_exists=True)
        held = study.user_attrs.get("sweep")
        if held is None:
            if block.sampler != "tpe":
                space = parse_space(block.space)
                for params in plan(block, space):
                    study.enqueue_trial(params, user_attrs={PLANNED: True})
            study.set_user_attr("sweep", defining)
        elif held != defining:
            changed = sorted(k for k in defining if held.get(k) != defining[k])
            raise ValueError(f"study {name!r} in {url} holds another sweep ({', '.join(changed)} differ); "
                             "use a new --workdir or sweep.study")
    if block.sampler == "tpe":  # workers started together would otherwise propose the same first trials
        study.sampler = optuna.samplers.TPESampler(seed=block.seed + len(study.trials))
    return study, storage


def retried(trials: list) -> set:
    """The numbers of the trials queued again (each such retry names its original in `retry_of`)."""
    return {t.user_attrs.get("retry_of") for t in trials}


def _enqueue_again(study: Any, trial: Any, keep: tuple[str, ...]) -> None:
    attrs = {k: v for k, v in trial.user_attrs.items() if k in keep}
    study.enqueue_trial(trial.params, user_attrs=attrs | {"retry_of": trial.number})


def requeue(study: Any, trial: Any) -> None:
    """Queue a dead trial again with its parameters and workdir: it resumes from its last checkpoint."""
    _enqueue_again(study, trial, (PLANNED, "workdir"))
    log.warning("trial %d lost its worker; queued again to resume in %s", trial.number,
                trial.user_attrs.get("workdir"))


def retry_failed(study: Any) -> None:
    """Queue each trial that ended in an error (and was not retried already) again, in a fresh workdir: for a
    rerun after the cause is fixed."""
    import optuna

    all_trials = study.get_trials(deepcopy=False)
    done = retried(all_trials)
    for t in all_trials:
        if t.state == optuna.trial.TrialState.FAIL and "error" in t.user_attrs and t.number not in done:
            _enqueue_again(study, t, (PLANNED,))
            log.warning("trial %d failed (%s); queued again", t.number, t.user_attrs["error"])


def recover(study: Any, storage: Any) -> None:
    """Fail and requeue the running trials whose worker was a process of this host that is gone, and (through
    the heartbeat) those of other hosts that went silent."""
    import optuna

    host = socket.gethostname()
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        pid = t.user_attrs.get("pid")  # None: its worker is still writing its owner attributes
        if t.user_attrs.get("host") == host and pid is not None and not alive(pid):
            if storage.set_trial_state_values(trial_id(storage, study, t.number), optuna.trial.TrialState.FAIL):
                requeue(study, t)
    optuna.storages.fail_stale_trials(study)


def trial_id(storage: Any, study: Any, number: int) -> int:
    return storage.get_trial_id_from_study_id_trial_number(storage.get_study_id_from_name(study.study_name), number)


def pending(study: Any, block: ml_collections.ConfigDict) -> int:
    """How many trials are left to start: queued ones, or (TPE) sweep.trials less those so far; a trial that
    died and was queued again counts once."""
    import optuna

    all_trials = study.get_trials(deepcopy=False)
    if block.sampler != "tpe":
        return sum(t.state == optuna.trial.TrialState.WAITING for t in all_trials)
    again = retried(all_trials)
    return max(block.trials - sum(t.number not in again for t in all_trials), 0)


def sweep(block: ml_collections.ConfigDict, folder: str | os.PathLike, max_trials: int | None = None,
          retry: bool = False) -> tuple[Any, str, str]:
    """Run trials until the study has none left, or this worker has run `max_trials` (0: none, only open the
    study), first queueing the failed trials again if `retry`; returns (study, metric, direction)."""
    import optuna
    from tqdm import tqdm

    sweep_config.check(block)
    folder = Path(folder)
    config = base_config(block)
    metric, direction = goal(block, config)
    extra = also(block, config)
    folder.mkdir(parents=True, exist_ok=True)
    study, storage = open_study(block, folder, direction)
    if retry:
        with folder_lock(folder):
            retry_failed(study)
    space, overrides = parse_space(block.space), parse_overrides(block.overrides)
    name = validation_name(metric)
    ran = 0
    total = len(plan(block, space)) if block.sampler == "grid" else block.trials  # random: its planned trials
    bar = tqdm(total=total, initial=total - pending(study, block), desc="sweep", unit="trial", dynamic_ncols=True,
               disable=max_trials == 0)
    while max_trials is None or ran < max_trials:
        # SQLite ignores Optuna's row lock, so two workers could pop the same queued trial: take turns
        with folder_lock(folder):
            recover(study, storage)
            if not pending(study, block):
                break
            trial = study.ask({k: p.distribution() for k, p in space.items()})
        if block.sampler != "tpe" and not trial.user_attrs.get(PLANNED):  # another worker took the last one
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            break
        workdir = trial.user_attrs.get("workdir") or f"trials/{trial.number:04d}"
        # pid before host: recover() judges a trial of this host by its pid, so it must never see host alone
        for key, value in {"workdir": workdir, "pid": os.getpid(), "host": socket.gethostname()}.items():
            trial.set_user_attr(key, value)
        settings = overrides | settings_of({k: trial.params[k] for k in space})
        bar.write(f"trial {trial.number}: " + " ".join(f"{k}={v}" for k, v in settings.items()))
        beat = Heartbeat(storage, trial_id(storage, study, trial.number))
        try:
            outcome = trials.run(trial, block.base, folder / workdir, folder / "logs" / f"{trial.number:04d}.log",
                                 settings, name, prune=block.pruner != "none", heartbeat=beat, also=extra)
        except BaseException:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            requeue(study, study.trials[trial.number])
            raise
        for key, value in outcome.attrs.items():
            trial.set_user_attr(key, value)
        state = {"complete": optuna.trial.TrialState.COMPLETE, "pruned": optuna.trial.TrialState.PRUNED,
                 "failed": optuna.trial.TrialState.FAIL}[outcome.state]
        study.tell(trial, outcome.value if outcome.state == "complete" else None, state=state)
        bar.write(f"trial {trial.number} {outcome.state}" + (
            f": {metric}={outcome.value:.4f}" if outcome.value is not None else
            f" at step {outcome.attrs['pruned_at']}" if outcome.state == "pruned" else
            f": {outcome.attrs.get('error', '')}"))
        bar.update(1)
        ran += 1
    bar.close()
    return study, metric, direction


class Heartbeat:
    """Records the trial's heartbeat in the storage at most every HEARTBEAT_S seconds."""

    def __init__(self, storage: Any, trial_id: int):
        self.storage, self.trial_id, self.last = storage, trial_id, 0.0

    def __call__(self) -> None:
        if time.time() - self.last >= HEARTBEAT_S:
            self.storage.record_heartbeat(self.trial_id)
            self.last = time.time()
