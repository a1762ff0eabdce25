"""The `train` and `checkpoint` blocks of an experiment config: steps, batch, optimiser, schedule, evaluation cadence.

    steps / epochs             a fixed number of steps, or (steps=0) epochs over the training split
    batch_size, grad_accum_steps   rows per optimiser step, split into that many micro-batches
    learning_rate, schedule (constant | linear | cosine), warmup_steps, weight_decay, max_grad_norm
    eval_every, eval_batch_size    validation cadence and batch
    log_every, seed, loss_chunk    metric log cadence, the run's seed, target positions per head chunk
    log_to, tracking           trackers beside metrics.jsonl and TensorBoard: "mlflow", "wandb" or both;
                               tracking.mlflow_uri ("" = the SQLite store WORKDIR/mlflow.db), experiment,
                               wandb_project, wandb_mode (offline | online | disabled); trackers.py
    early_stopping             metric (val_loss, val_<task metric>; in a multi-task run TASK/val_..., the mean
                               val_loss, or a weighted sum W*NAME+W*NAME), mode (min | max), patience (0 = off),
                               min_delta

    preference                 loss: none (supervised) | dpo | ipo | orpo | simpo on data.train's preference pairs
                               (ftjax.data.pairs); beta, label_smoothing (dpo, simpo), gamma (simpo's margin),
                               orpo_weight; dpo and ipo compare with a reference model: `initial` (the
                               model the run starts from, e.g. an SFT adapter given by model.init_from; its
                               log-probs computed once before training) or `adapter_off` (the base with the
                               adapter switched off, in every step); no second copy of the weights either way

checkpoint: save `every` N steps (and at every evaluation and the last step), keep the newest `keep` plus the
best, write asynchronously (`async_save`).
"""

from __future__ import annotations

import ml_collections

from ftjax import objective
from ftjax.config import at_least, one_of
from ftjax.train.early_stopping import is_weighted, weighted_terms
from ftjax.train.trackers import tracker_names

SCHEDULES = ("constant", "linear", "cosine")
LOSS_METRICS = ("val_loss", "val_perplexity", "val_token_accuracy")  # computed at every evaluation
PREFERENCE_METRICS = ("val_loss", "val_reward_accuracy", "val_reward_margin")  # a preference run's instead


def default_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(dict(
        steps=0, epochs=2, batch_size=8, grad_accum_steps=1, learning_rate=1e-3, schedule="cosine", warmup_steps=8,
        weight_decay=0.0, max_grad_norm=1.0, eval_every=20, eval_batch_size=16, log_every=1, seed=0, loss_chunk=256,
        early_stopping=dict(metric="val_loss", mode="min", patience=0, min_delta=0.0), log_to="",
        tracking=dict(mlflow_uri="", experiment="ftjax", wandb_project="ftjax", wandb_mode="offline"),
        preference=preference_config()))


def preference_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(dict(loss="none", beta=0.1, label_smoothing=0.0, gamma=0.0, orpo_weight=1.0,
                                          reference="initial"))


def preference_loss(config: ml_collections.ConfigDict) -> str:
    """The run's preference loss, or "none" (configs written before the block existed are supervised)."""
    return config.train.get("preference", {}).get("loss", "none")


def checkpoint_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(dict(every=20, keep=2, async_save=True))


def tiny(config: ml_collections.ConfigDict) -> None:
    """The shape the tests give an experiment config (its `tiny` variant): a model path from the command line,
    float32, 8 steps of 4 rows evaluated every 4, synchronous checkpoints, one device, short generations."""
    config.model.update(path="", dtype="float32")
    config.train.update(epochs=0, steps=8, batch_size=4, eval_every=4, eval_batch_size=4, warmup_steps=0)
    config.checkpoint.update(every=4, async_save=False)
    config.mesh.update(shape=(1, 1, 1))
    config.eval.update(max_new_tokens=8, batch_size=4)


def check(config: ml_collections.ConfigDict) -> None:
    """Every block a training run reads, and the rules between blocks, before any file is read or written: each
    bad value is a one-line ValueError naming the key and what it may be. (The `eval` block's generation
    settings are checked by the task-metrics hook that uses them, ftjax.eval.runner.validation_metrics.)"""
    from ftjax import sharding, tasks
    from ftjax.data import config as data
    from ftjax.models import config as model
    from ftjax.models import heads
    from ftjax.peft.config import validate as check_peft

    model.check(config.model)
    tasks.check(config)
    check_peft(config.peft)
    for name, task in tasks.task_configs(config).items():
        where = f"tasks.{name}." if name else ""
        try:
            data.check(task.data)
            heads.check(task.head, data.label_set(task.data))
        except ValueError as e:
            raise ValueError(f"{where}{e}") from None
        if config.peft.method == "prompt" and task.data.pack:
            raise ValueError(f"peft.method=prompt puts its virtual tokens in front of each row, which packed "
                             f"examples would share; set {where}data.pack=False")
    known = logged_metrics(config)
    sharding.check_rules(config.mesh.rules)
    tc = config.train
    at_least(tc, "train", 0, "steps", "epochs", "learning_rate", "warmup_steps", "weight_decay", "max_grad_norm",
             "seed")
    at_least(tc, "train", 1, "batch_size", "grad_accum_steps", "eval_every", "eval_batch_size", "log_every",
             "loss_chunk")
    if tc.steps == 0 and tc.epochs == 0:
        raise ValueError("train.steps=0 and train.epochs=0: nothing to train; set one of them")
    if tc.schedule not in SCHEDULES:
        raise ValueError(f"unknown train.schedule {tc.schedule!r}; choose from: {', '.join(SCHEDULES)}")
    es = tc.early_stopping
    one_of(es, "train.early_stopping", "mode", ("min", "max"))
    at_least(es, "train.early_stopping", 0, "patience", "min_delta")
    for _, name in weighted_terms(es.metric) if is_weighted(es.metric) else [(1.0, es.metric)]:
        if name not in known:
            what = f"{es.metric!r}" + (f": its term {name!r}" if name != es.metric else "")
            raise ValueError(f"train.early_stopping.metric={what} is not computed; choose from {', '.join(known)} "
                             "(generated metrics come from eval.metrics), or a weighted sum of them")
    at_least(config.checkpoint, "checkpoint", 1, "every", "keep")
    tracker_names(config)
    check_preference(config)
    if "tracking" in tc:
        one_of(tc.tracking, "train.tracking", "wandb_mode", ("offline", "online", "disabled"))
    check_objective(config, known)


def check_preference(config: ml_collections.ConfigDict) -> None:
    from ftjax import tasks
    from ftjax.loss import NEEDS_REFERENCE, PREFERENCE_LOSSES

    kind = preference_loss(config)
    if kind == "none":
        return
    p = config.train.preference
    one_of(p, "train.preference", "loss", ("none", *PREFERENCE_LOSSES))
    one_of(p, "train.preference", "reference", ("initial", "adapter_off"))
    at_least(p, "train.preference", 0, "label_smoothing", "gamma", "orpo_weight")
    if not p.beta > 0 or not p.label_smoothing < 0.5:
        raise ValueError(f"train.preference: need beta > 0 and label_smoothing < 0.5, got {p.beta} and "
                         f"{p.label_smoothing}")
    if tasks.task_names(config) != [""]:
        raise ValueError("train.preference trains one task on preference pairs; a multi-task run is not supported")
    if config.head.type != "lm":
        raise ValueError(f"train.preference scores answers with the language-model head; head.type={config.head.type}")
    if config.data.pack:
        raise ValueError("train.preference: pairs are not packed (a pair's rows stay apart); set data.pack=False")
    ignored = {"data.group_balance": config.data.get("group_balance", "none") != "none",
               "data.synthetic_weight": config.data.get("synthetic_weight", 1.0) != 1.0,
               "data.per_label": bool(config.data.get("per_label")),
               "data.label_noise": bool(config.data.get("label_noise"))}
    if any(ignored.values()):  # pairs are read as they are: no row weights, label sampling or noise
        raise ValueError(f"train.preference: {', '.join(k for k, v in ignored.items() if v)} do not apply to "
                         "preference pairs; leave them at their defaults")
    if config.eval.get("metrics"):
        raise ValueError("train.preference validates on pairs (loss, reward accuracy and margin); leave "
                         "eval.metrics empty and score the task with ftjax eval on a test split")
    if kind in NEEDS_REFERENCE and p.reference == "adapter_off" and config.peft.method == "full":
        raise ValueError("train.preference.reference=adapter_off: with peft.method=full there is no adapter to switch "
                         "off; use reference=initial")


def logged_metrics(config: ml_collections.ConfigDict) -> list[str]:
    """The validation metrics training logs at every evaluation: losses, a head's accuracy or MSE, and the
    generated eval.metrics (val_NAME), under each task's prefix in a multi-task run."""
    from ftjax import tasks
    from ftjax.metrics.suite import parse_metrics

    known = [] if tasks.task_names(config) == [""] else ["val_loss"]  # a mixture adds the mean val_loss
    for name, task in tasks.task_configs(config).items():
        try:
            generated = parse_metrics(task.eval.metrics)
        except ValueError as e:
            raise ValueError(f"{f'tasks.{name}.' if name else ''}eval.metrics: {e}") from None
        loss = {"classification": (*LOSS_METRICS, "val_accuracy"), "regression": ("val_loss", "val_mse")}.get(
            task.head.type, LOSS_METRICS)
        if preference_loss(config) != "none":
            loss = PREFERENCE_METRICS
        known += [f"{tasks.prefix(name)}{m}" for m in (*loss, *(f"val_{g}" for g in generated))]
    return known


def check_objective(config: ml_collections.ConfigDict, known: list[str]) -> None:
    """The objective block, and its metric a name training or eval computes (training reports what it logs)."""
    from ftjax.metrics.suite import METRICS

    block = objective.objective_block(config)
    objective.check(block)
    logged = [*known, config.train.early_stopping.metric]  # a weighted sum is logged too
    if objective.validation_name(block.metric) not in logged and block.metric.rpartition("/")[2] not in METRICS:
        raise ValueError(f"objective.metric={block.metric!r} is neither logged in training ("
                         f"{', '.join(objective.validation_to_eval(k) for k in known)}) nor an eval metric")
