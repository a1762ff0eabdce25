"""Supervised fine-tuning, top to bottom: `main(config, workdir)`.

    ftjax train --config=configs/sft.py --workdir=runs/demo [--config.train.steps=100 ...]

Load the model and tokenizer, add the adapter, tokenize the splits, shard over the mesh, restore the newest
checkpoint if the workdir has one, then loop: step, log, evaluate on the validation split, early-stop, save.
A project that needs another loop copies this file into `experiments/<name>/` rather than subclassing it.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import sys
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P

from ftjax import distributed, sharding
from ftjax.checkpoint import Checkpoints, abstract
from ftjax.data.formats import encode_all
from ftjax.data.pipeline import Batches
from ftjax.data.sources import load_rows, parse_columns
from ftjax.early_stopping import EarlyStopping
from ftjax.loss import target_positions
from ftjax.metrics_writer import MetricWriter
from ftjax.models import from_pretrained
from ftjax.models.config import ModelConfig
from ftjax.optim import optimizer, schedule
from ftjax.peft.apply import apply_peft, trainable_filter
from ftjax.peft.report import parameter_report
from ftjax.steps import make_eval_step, make_train_step, rng_counts, set_rng_counts
from ftjax.tokenizer import load_tokenizer
from ftjax.workdir import write_json_atomic

log = logging.getLogger("ftjax.train")


def load_split(spec: str, config: ml_collections.ConfigDict, tokenizer: Any) -> list[dict]:
    """Rows of one split, tokenized with loss masks."""
    rows = load_rows(spec, parse_columns(config.data.columns))
    if not rows:
        raise ValueError(f"{spec}: no rows")
    labels = [s.strip() for s in config.data.labels.split(",") if s.strip()] or None
    return encode_all(rows, tokenizer, config.data.format, config.data.max_length, labels)


def step_batch(batches: Batches, accum: int, shards: distributed.DataShards | None = None) -> dict[str, np.ndarray]:
    """`accum` micro-batches stacked [accum, micro, ...], plus the gathered target positions per micro-batch.
    With several processes the positions index the global micro-batch, so every process needs all loss masks."""
    micro = [next(batches) for _ in range(accum)]
    batch = {k: np.stack([m[k] for m in micro]) for k in ("inputs", "targets", "positions", "attention_mask",
                                                          "segment_ids", "loss_mask")}
    loss_mask = batch.pop("loss_mask")
    batch["index"], batch["valid"] = target_positions(shards.gather(loss_mask, 1) if shards else loss_mask)
    return batch


def evaluate_loss(eval_step, trainable, rng, rest, examples: list[dict], config, pad_id: int,
                  place) -> dict[str, float]:
    """Validation loss, perplexity and next-token accuracy over target tokens of every example."""
    batches = Batches(examples, batch_size=config.train.eval_batch_size, seq_len=config.data.max_length,
                      seed=0, shuffle=False, num_epochs=1, pad_id=pad_id, drop_remainder=False)
    nll = n = hits = 0.0
    for b in batches:
        b = dict(b)
        b["index"], b["valid"] = target_positions(b.pop("loss_mask"))
        s, k, h = eval_step(trainable, rng, rest, place(b))
        nll, n, hits = nll + float(s), n + float(k), hits + float(h)
    loss = nll / max(n, 1.0)
    return {"val_loss": loss, "val_perplexity": math.exp(min(loss, 50.0)), "val_token_accuracy": hits / max(n, 1.0)}


def main(config: ml_collections.ConfigDict, workdir: str | Path) -> dict:
    """Train; returns the summary also written to `workdir/summary.json`."""
    tc = config.train
    # Data first: a bad file or row stops the run before anything is written.
    tokenizer = load_tokenizer(config.model.path)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    train_examples = load_split(config.data.train, config, tokenizer)
    val_examples = load_split(config.data.validation, config, tokenizer) if config.data.validation else []
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    is_main = jax.process_index() == 0
    if is_main:
        write_json_atomic(workdir / "config.json", config.to_dict())

    steps_per_epoch = max(len(train_examples) // tc.batch_size, 1)
    total_steps = tc.steps or tc.epochs * steps_per_epoch
    run = build(config, total_steps)
    trainable, opt_state, rng, rest, shardings = run.trainable, run.opt_state, run.rng, run.rest, run.shardings
    eval_place = lambda b: jax.device_put({k: b[k] for k in run.eval_shardings}, run.eval_shardings)
    learning_rate = schedule(tc.schedule, tc.learning_rate, total_steps, tc.warmup_steps)  # for the log

    # Resume from the newest readable checkpoint, if any.
    es = tc.early_stopping
    ckpts = Checkpoints(workdir / "checkpoints", keep=config.checkpoint.keep,
                        metric=es.metric if val_examples else None, mode=es.mode,
                        async_save=config.checkpoint.async_save)
    stopper = EarlyStopping(es.metric, es.mode, es.patience, es.min_delta)
    shards = run.shards
    batches = Batches(train_examples, batch_size=shards.rows // shards.count, seq_len=config.data.max_length,
                      seed=tc.seed, pack=config.data.pack, shard_index=shards.index, shard_count=shards.count,
                      pad_id=pad_id)
    start = 0
    restored = ckpts.restore(abstract(trainable, shardings[0]), abstract(opt_state, shardings[1]))
    if restored:
        start, trainable, opt_state, meta = restored
        if len(meta["data"]) != jax.process_count():
            raise ValueError(f"the checkpoint at step {start} was written by {len(meta['data'])} processes, this "
                             f"run has {jax.process_count()}; resume with as many")
        batches.set_state(meta["data"][jax.process_index()])
        rng = set_rng_counts(rng, meta["rng_counts"])
        stopper.load(meta["early_stopping"])
        log.info("resumed from step %d", start)
    writer = MetricWriter(workdir, resume_step=start)

    def save(step: int, metrics: dict | None) -> None:
        meta = {"step": step, "data": distributed.allgather_json(batches.get_state()),  # one state per process
                "rng_counts": rng_counts(rng), "early_stopping": stopper.state()}
        ckpts.save(step, trainable, opt_state, meta, metrics)

    from tqdm import tqdm

    bar = tqdm(total=total_steps, initial=start, desc="train", unit="step", file=sys.stderr, disable=not is_main,
               dynamic_ncols=True)
    t0, tokens, step, last = time.perf_counter(), 0, start, {}
    timed_from = None  # throughput excludes the first step's compilation
    stopped_early = False
    for step in range(start + 1, total_steps + 1):
        batch = step_batch(batches, tc.grad_accum_steps, shards)
        trainable, opt_state, rng, m = run.train_step(trainable, opt_state, rng, rest,
                                                      sharding.put_batch(batch, run.batch_shardings))
        m = {k: float(v) for k, v in m.items()}
        if timed_from is None:
            timed_from = time.perf_counter()
        else:
            tokens += int(batch["attention_mask"].sum()) * shards.count  # other shards: about as many
        if not math.isfinite(m["loss"]):
            ckpts.close()
            raise FloatingPointError(f"loss is {m['loss']} at step {step}; stopping (last checkpoint: "
                                     f"{max(ckpts.all_steps(), default='none')})")
        m |= {"learning_rate": float(learning_rate(step - 1)),
              "tokens_per_s": tokens / max(time.perf_counter() - timed_from, 1e-9)}
        bar.set_postfix(loss=f"{m['loss']:.4f}", tok_s=f"{m['tokens_per_s']:.0f}")
        bar.update(1)
        evaluated = None
        if val_examples and (step % tc.eval_every == 0 or step == total_steps):
            evaluated = evaluate_loss(run.eval_step, trainable, rng, rest, val_examples, config, pad_id, eval_place)
            if config.eval.metrics:  # generated task metrics; imported here so plain runs skip rouge/sacrebleu
                from ftjax.evaluate import validation_metrics

                evaluated |= validation_metrics(nnx.merge(run.eval_graphdef, trainable, rng, rest), tokenizer, config)
            m |= evaluated
            stopper.update(step, evaluated)
            bar.write(f"step {step}: " + ", ".join(f"{k}={v:.4f}" for k, v in evaluated.items()))
        if step % tc.log_every == 0 or evaluated:
            writer.write(step, m)
        last = m
        if step % config.checkpoint.every == 0 or step == total_steps or evaluated or stopper.should_stop:
            save(step, evaluated)
        if stopper.should_stop:
            bar.write(f"early stopping at step {step}: no {es.metric} improvement in {es.patience} evaluations "
                      f"(best {stopper.best:.4f} at step {stopper.best_step})")
            stopped_early = True
            break
    bar.close()
    ckpts.close()
    writer.close()
    summary = {"steps": step, "total_steps": total_steps, "stopped_early": stopped_early,
               "best_step": stopper.best_step, "best": stopper.best, "metric": es.metric,
               "final": last, "parameters": run.counts, "train_examples": len(train_examples),
               "validation_examples": len(val_examples), "seconds": time.perf_counter() - t0}
    if is_main:
        write_json_atomic(workdir / "summary.json", summary)
    return summary


@dataclasses.dataclass
class Run:
    """A run's mesh, sharded state and jitted steps: what `main` loops over and `ftjax bench` times."""

    model_config: ModelConfig
    counts: dict  # parameter_report: base, trainable
    mesh: jax.sharding.Mesh
    shards: distributed.DataShards  # which micro-batch rows this process loads
    trainable: nnx.State
    opt_state: Any
    rng: nnx.State
    rest: nnx.State
    shardings: tuple  # of (trainable, opt_state, rng, rest)
    batch_shardings: dict[str, NamedSharding]  # train batches [accum, micro, ...]
    eval_shardings: dict[str, NamedSharding]  # validation batches [batch, ...]
    eval_graphdef: nnx.GraphDef  # the model in eval mode (no dropout), for generation
    train_step: Any  # (trainable, opt_state, rng, rest, batch) -> (trainable, opt_state, rng, metrics)
    eval_step: Any  # (trainable, rng, rest, batch) -> (nll sum, targets, hits)


def build(config: ml_collections.ConfigDict, total_steps: int) -> Run:
    """Load the model, add the adapter, shard the state over the mesh by the rules, and jit the steps with
    explicit shardings (train: donated state). The unsharded model is dropped on return."""
    tc = config.train
    model = from_pretrained(config.model.path, dtype=jnp.dtype(config.model.dtype))
    model.model.remat = config.model.remat
    apply_peft(model, config.peft, nnx.Rngs(tc.seed))
    counts = parameter_report(model, config.peft)
    log.info("parameters: %s trainable of %s base (%.4f%%)", f"{counts['trainable_params']:,}",
             f"{counts['base_params']:,}", counts["trainable_percent"])

    # Mesh and shardings: parameters by their logical axes, batches over data x fsdp.
    mesh = sharding.make_mesh(config.mesh.shape)
    rules = sharding.check_rules(config.mesh.rules)
    replicated = NamedSharding(mesh, P())
    micro = tc.batch_size // tc.grad_accum_steps  # global micro-batch; each process loads its rows
    replicas = mesh.shape["data"] * mesh.shape["fsdp"]
    if tc.batch_size % tc.grad_accum_steps or micro % replicas:
        raise ValueError(f"train.batch_size={tc.batch_size} must split into grad_accum_steps={tc.grad_accum_steps} "
                         f"micro-batches divisible by data x fsdp = {replicas}")
    shards = distributed.DataShards(mesh, micro)
    model.train()
    graphdef, trainable, rng, rest = nnx.split(model, trainable_filter(config.peft), nnx.RngState, ...)
    model.eval()
    eval_graphdef = nnx.graphdef(model)
    shard = lambda tree: sharding.state_shardings(tree, mesh, rules)
    trainable, rest = jax.device_put(trainable, shard(trainable)), jax.device_put(rest, shard(rest))
    rng = jax.device_put(rng, replicated)

    tx = optimizer(tc, total_steps)
    placed = lambda tree: jax.tree.map(lambda x: x.sharding, tree)
    # optimizer moments sharded like their parameters, step counters replicated
    opt_shardings = optax.tree_map_params(tx, lambda _, s: s, jax.eval_shape(tx.init, trainable), placed(trainable),
                                          transform_non_params=lambda _: replicated)
    opt_state = jax.jit(tx.init, out_shardings=opt_shardings)(trainable)
    shardings = (placed(trainable), opt_shardings, placed(rng), placed(rest))
    rows = ("inputs", "targets", "positions", "attention_mask", "segment_ids")
    positions = {"index": replicated, "valid": replicated}  # flat target positions into the whole micro-batch
    batch_shardings = {k: NamedSharding(mesh, P(None, sharding.BATCH_AXES)) for k in rows} | positions
    train_step = jax.jit(make_train_step(graphdef, tx, tc.loss_chunk), donate_argnums=(0, 1, 2),
                         in_shardings=(*shardings, batch_shardings), out_shardings=(*shardings[:3], replicated))
    # every process builds the whole validation batch; its rows split over data x fsdp when they divide
    eval_rows = P(sharding.BATCH_AXES) if tc.eval_batch_size % replicas == 0 else P()
    eval_shardings = {k: NamedSharding(mesh, eval_rows) for k in rows} | positions
    eval_step = jax.jit(make_eval_step(eval_graphdef, tc.loss_chunk), out_shardings=replicated,
                        in_shardings=(shardings[0], shardings[2], shardings[3], eval_shardings))
    return Run(model.config, counts, mesh, shards, trainable, opt_state, rng, rest, shardings, batch_shardings,
               eval_shardings, eval_graphdef, train_step, eval_step)
