"""Supervised fine-tuning, top to bottom: `main(config, workdir)`.

    ftjax train --config=configs/sft.py --workdir=runs/demo [--config.train.steps=100 ...]

Check the config, read and tokenize the splits, set the run up on the mesh (setup.py), lock the workdir and
check it against the run it holds (guard.py), restore the newest checkpoint if it has one, then loop: step,
log, evaluate on the validation split, early-stop, save. A project that needs another loop copies this file
into `experiments/<name>/` rather than subclassing it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Protocol

import jax
import ml_collections
from tqdm import tqdm

from ftjax import distributed, sharding
from ftjax.hardware import hardware
from ftjax.io import write_json
from ftjax.memory import peak_memory
from ftjax.models.tokenizer import load_tokenizer
from ftjax.objective import judge, objective_block, validation_name
from ftjax.tasks import mixture_rates, prefix, task_configs
from ftjax.train.batches import MixtureBatches, RunData, eval_batches, load_data, step_batch, train_batches
from ftjax.train.checkpoints import Checkpoints, abstract
from ftjax.train.config import check, preference_loss
from ftjax.train.early_stopping import EarlyStopping, is_weighted, weighted_sum
from ftjax.train.guard import open_run
from ftjax.train.metric_log import MetricWriter
from ftjax.train.reference import attach_reference
from ftjax.train.setup import TrainSetup, setup
from ftjax.train.state import TrainState, rng_counts, set_rng_counts
from ftjax.workdir import Workdir, read_metrics

log = logging.getLogger("ftjax.train")
class TaskMetrics(Protocol):
    """Generated validation metrics, computed by a hook from outside train/ (ftjax.eval.runner)."""

    def check(self, config: ml_collections.ConfigDict) -> None: ...

    def __call__(self, model: Any, tokenizer: Any, rows: list[dict], config: ml_collections.ConfigDict
                 ) -> dict[str, float]: ...  # {"val_<metric>": value}


def main(config: ml_collections.ConfigDict, workdir: str | Path, task_metrics: TaskMetrics | None = None) -> dict:
    """Train; returns the summary also written to `workdir/summary.json`. `task_metrics` computes
    config.eval.metrics on the validation rows (the commands pass ftjax.eval.runner.validation_metrics).
    Everything that can reject the run (config, data, model, mesh, the workdir's lock and its run) is checked
    before anything is written (guard.py)."""
    check(config)
    tasks = task_configs(config)
    if any(t.eval.metrics for t in tasks.values()) and task_metrics is None:
        raise ValueError("eval.metrics needs a task-metrics hook: pass ftjax.eval.runner.validation_metrics")
    if task_metrics is not None:
        for task in tasks.values():
            task_metrics.check(task)
    tokenizer = load_tokenizer(config.model.path)
    data = {name: load_data(task, tokenizer=tokenizer) for name, task in tasks.items()}
    tc = config.train
    rows = sum(len(d.train) for d in data.values())
    total_steps = tc.steps or tc.epochs * max(rows // tc.batch_size, 1)
    run = setup(config, total_steps)
    attach_reference(run, config, data)  # a DPO / IPO run's reference log-probs, from the initial model
    with open_run(workdir, config, main_process=jax.process_index() == 0) as wd:
        return train(config, wd, data, run, total_steps, task_metrics)


def train(config: ml_collections.ConfigDict, wd: Workdir, data: dict[str, RunData], run: TrainSetup,
          total_steps: int, task_metrics: TaskMetrics | None) -> dict:
    """The loop: resume, then step, log, evaluate, early-stop and save until `total_steps`. `data` holds each
    task's splits (ftjax.tasks; one task named "" in a single-task run)."""
    tc, es = config.train, config.train.early_stopping
    is_main = jax.process_index() == 0
    tasks = task_configs(config)
    validation = any(d.validation for d in data.values())
    ckpts = Checkpoints(wd.checkpoints, keep=config.checkpoint.keep, metric=es.metric if validation else None,
                        mode=es.mode, async_save=config.checkpoint.async_save, clean_tmp=True)
    stopper = EarlyStopping(es.metric, es.mode, es.patience, es.min_delta)
    rates = mixture_rates(config, {name: len(d.train) for name, d in data.items()})
    batches = MixtureBatches({name: train_batches(d.train, tasks[name], run.shards, d.pad_id)
                              for name, d in data.items()}, rates, tc.seed)
    start, state = resume(ckpts, run, batches, stopper)
    if start >= total_steps or stopper.should_stop:  # a finished run: keep its results as they are
        ckpts.close()
        log.info("the run in %s already finished at step %d; raise train.steps to train on", wd.root, start)
        if wd.summary.is_file():
            return json.loads(wd.summary.read_text())
        return {"steps": start, "total_steps": total_steps, "stopped_early": stopper.should_stop,
                "best_step": stopper.best_step, "best": stopper.best, "metric": es.metric}
    writer = MetricWriter(wd.root, resume_step=start, config=config)
    bar = tqdm(total=total_steps, initial=start, desc="train", unit="step", file=sys.stderr, disable=not is_main,
               dynamic_ncols=True)
    t0, throughput, step, last = time.perf_counter(), Throughput(), start, {}
    with contextlib.ExitStack() as finish, StopRequest() as stop:  # on any exit: saves finish, files close
        finish.callback(writer.close)
        finish.callback(ckpts.close)
        finish.callback(bar.close)
        for step in range(start + 1, total_steps + 1):
            state, m = take_step(run, state, batches, tc.grad_accum_steps, step, throughput, ckpts)
            bar.set_postfix(loss=f"{m['loss']:.4f}", tok_s=f"{m['tokens_per_s']:.0f}")
            bar.update(1)
            evaluated = None
            if validation and (step % tc.eval_every == 0 or step == total_steps):
                evaluated = validate(run, state, data, tasks, config.train.early_stopping.metric, task_metrics)
                m |= evaluated
                stopper.update(step, evaluated)
                bar.write(f"step {step}: " + ", ".join(f"{k}={v:.4f}" for k, v in evaluated.items()))
            if step % tc.log_every == 0 or evaluated:
                writer.write(step, m)
            last = m
            if (step % config.checkpoint.every == 0 or step == total_steps or evaluated or stopper.should_stop
                    or stop.requested):
                save(ckpts, step, state, batches, stopper, evaluated)
            if stop.requested:
                raise KeyboardInterrupt(f"saved step {step}; rerun the same command to resume")
            if stopper.should_stop:
                bar.write(f"early stopping at step {step}: no {es.metric} improvement in {es.patience} evaluations "
                          f"(best {stopper.best:.4f} at step {stopper.best_step})")
                break
    summary = {"steps": step, "total_steps": total_steps, "stopped_early": stopper.should_stop,
               "best_step": stopper.best_step, "best": stopper.best, "metric": es.metric,
               "final": last, "parameters": run.counts, "train_examples": sum(len(d.train) for d in data.values()),
               "validation_examples": sum(len(d.validation) for d in data.values()),
               "seconds": time.perf_counter() - t0,
               "hardware": hardware()}
    if list(data) != [""]:
        summary["tasks"] = {name: {"rate": rates[name], "train_examples": len(d.train),
                                   "validation_examples": len(d.validation)} for name, d in data.items()}
    if run.transfer is not None:
        summary["init_from"] = run.transfer
    memory, summary["memory"] = peak_memory()
    summary["peak_memory_gb"] = memory / 2 ** 30
    if validation:
        summary["objective"] = judge_run(config, wd, stopper, summary)
    if is_main:
        write_json(wd.summary, summary)
    return summary


def judge_run(config: ml_collections.ConfigDict, wd: Workdir, stopper: EarlyStopping, summary: dict) -> dict:
    """The objective (ftjax.objective) judged at the best checkpoint: its validation figure then, the minutes and
    peak memory the run took."""
    block = objective_block(config)
    name = validation_name(block.metric)
    if name == config.train.early_stopping.metric:
        value = stopper.best
    else:
        at_best = [r for r in read_metrics(wd.root) if r["step"] == stopper.best_step and name in r]
        value = at_best[-1][name] if at_best else None
    return judge(block, value, split="validation", minutes=summary["seconds"] / 60,
                 memory_gb=summary["peak_memory_gb"])


class StopRequest:
    """Ctrl-C or SIGTERM (a preempted job) while training: finish the step, save it, then stop with
    KeyboardInterrupt; a second Ctrl-C stops at once. Multi-process runs keep the default handlers (every
    process must join a save, and a signal may reach only some of them)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.requested: int | None = None
        self.previous: dict = {}

    def _handle(self, signum: int, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = signum

    def __enter__(self) -> StopRequest:
        if jax.process_count() == 1 and threading.current_thread() is threading.main_thread():
            self.previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self.previous.items():
            signal.signal(s, handler)


class Throughput:
    """Tokens per second since the end of the first step (which compiles, so it is not counted)."""

    def __init__(self):
        self.start: float | None = None
        self.tokens = 0

    def update(self, tokens: int) -> float:
        if self.start is None:
            self.start = time.perf_counter()
        else:
            self.tokens += tokens  # other processes' shards: about as many
        return self.tokens / max(time.perf_counter() - self.start, 1e-9)


def take_step(run: TrainSetup, state: TrainState, batches: MixtureBatches, accum: int, step: int,
              throughput: Throughput, ckpts: Checkpoints) -> tuple[TrainState, dict[str, float]]:
    """One optimizer step on the next batch of the task that supplies this step; its metrics as floats (which
    waits for the step), the task's loss and accuracy also under its own name (a regression task, whose loss is
    the squared error, has no accuracy)."""
    task = batches.task(step)
    batch = step_batch(batches.batches[task], accum, run.shards)
    state, m = run.train_steps[task](state, sharding.put_batch(batch, run.batch_shardings))
    m = {k: float(v) for k, v in m.items()}
    if task:
        m |= {f"{prefix(task)}{k}": m[k] for k in ("loss", "token_accuracy") if k in m}
    m["tokens_per_s"] = throughput.update(int(batch["attention_mask"].sum()) * run.shards.count)
    if not math.isfinite(m["loss"]):
        raise FloatingPointError(f"loss is {m['loss']} at step {step}; stopping (last checkpoint: "
                                 f"{max(ckpts.all_steps(), default='none')})")
    m["learning_rate"] = float(run.learning_rate(step - 1))
    return state, m


def resume(ckpts: Checkpoints, run: TrainSetup, batches: MixtureBatches, stopper: EarlyStopping
           ) -> tuple[int, TrainState]:
    """(step, state) of the newest readable checkpoint, with the data position, RNG counts and early-stopping
    record restored; (0, the fresh state) when there is none."""
    state = run.state
    restored = ckpts.restore(abstract(state.trainable, run.shardings.trainable),
                             abstract(state.opt_state, run.shardings.opt_state))
    if not restored:
        return 0, state
    start, trainable, opt_state, meta = restored
    if len(meta["data"]) != jax.process_count():
        raise ValueError(f"the checkpoint at step {start} was written by {len(meta['data'])} processes, this "
                         f"run has {jax.process_count()}; resume with as many")
    batches.set_state(meta["data"][jax.process_index()])
    stopper.load(meta["early_stopping"])
    log.info("resumed from step %d", start)
    return start, TrainState(trainable, opt_state, set_rng_counts(state.rng, meta["rng_counts"]), state.frozen)


def save(ckpts: Checkpoints, step: int, state: TrainState, batches: MixtureBatches, stopper: EarlyStopping,
         metrics: dict | None) -> None:
    meta = {"step": step, "data": distributed.allgather_json(batches.get_state()),  # one state per process
            "rng_counts": rng_counts(state.rng), "early_stopping": stopper.state()}
    ckpts.save(step, state.trainable, state.opt_state, meta, metrics)


def validate(run: TrainSetup, state: TrainState, data: dict[str, RunData], tasks: dict[str, ml_collections.ConfigDict],
             metric: str, task_metrics: TaskMetrics | None) -> dict[str, float]:
    """Per task: validation loss, perplexity and next-token accuracy over the target tokens of every example, plus
    the generated task metrics of its eval.metrics, each under the task's prefix ("banking77/val_loss"). A
    multi-task run adds `val_loss`, the mean of the tasks' losses, and the weighted sum early stopping names
    (`metric`). `tasks`: each task's view of the run config (ftjax.tasks.task_configs)."""
    out = {}
    for name, task in tasks.items():
        if data[name].validation:
            found = validate_task(run.eval_steps[name], run, state, data[name], task, task_metrics)
            out |= {f"{prefix(name)}{k}": v for k, v in found.items()}
    if list(data) != [""]:
        losses = [v for k, v in out.items() if k.endswith("/val_loss")]
        out["val_loss"] = sum(losses) / len(losses)
    if is_weighted(metric):
        out[metric] = weighted_sum(metric, out)
    return out


def validate_task(eval_step: Any, run: TrainSetup, state: TrainState, data: RunData, config: ml_collections.ConfigDict,
                  task_metrics: TaskMetrics | None) -> dict[str, float]:
    nll = n = hits = margin = 0.0
    for b in eval_batches(data.validation, config, data.pad_id):
        s, k, h, *m = eval_step(state, run.place_eval(b))
        nll, n, hits, margin = nll + float(s), n + float(k), hits + float(h), margin + float(sum(m))
    loss = nll / max(n, 1.0)
    if preference_loss(config) != "none":  # n counts pairs; a pair is won when its chosen reward is higher
        out = {"val_loss": loss, "val_reward_accuracy": 100 * hits / max(n, 1.0),
               "val_reward_margin": margin / max(n, 1.0)}
    elif config.head.type == "regression":  # the loss is the mean squared error
        out = {"val_loss": loss, "val_mse": loss}
    else:
        out = {"val_loss": loss, "val_perplexity": math.exp(min(loss, 50.0)),
               "val_token_accuracy": hits / max(n, 1.0)}
    if config.head.type == "classification":  # one target per example: label accuracy, in percent as eval has it
        out["val_accuracy"] = 100 * out["val_token_accuracy"]
    if config.eval.metrics:
        out |= task_metrics(run.eval_model(state), data.tokenizer, data.validation_rows, config)
    return out
