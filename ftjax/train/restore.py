"""Rebuild a trained model from a workdir: base model + adapter + the trainable state of a checkpoint; and
transfer, a run that starts from another run's adapter and task heads (`model.init_from=WORKDIR[:checkpoint]`),
with `peft.freeze` keeping chosen parts (a pattern on parameter paths) as loaded."""

from __future__ import annotations

import logging
import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from ftjax.models.scan import stack_blocks, unstack_blocks
from ftjax.models.tokenizer import load_tokenizer
from ftjax.peft.apply import trainable_filter
from ftjax.train.build import build_model
from ftjax.train.checkpoints import Checkpoints, ShapeMismatch
from ftjax.workdir import Workdir, is_ensemble, read_config

log = logging.getLogger("ftjax.train")


def pick_step(ckpts: Checkpoints, which: str | int) -> int:
    """The step `which` names: best (the best evaluated one, else the newest), last, or a step number."""
    steps = ckpts.all_steps()
    if not steps:
        raise FileNotFoundError(f"no checkpoints in {ckpts.directory}")
    if which == "last":
        return max(steps)
    if which == "best":
        best = ckpts.best_step  # reads every kept step's metrics
        return best if best is not None else max(steps)
    if not str(which).isdigit():
        raise ValueError(f"--checkpoint={which!r}: use best, last or a step number (have {sorted(steps)})")
    step = int(which)
    if step not in steps:
        raise ValueError(f"no checkpoint at step {step}; have {sorted(steps)}")
    return step


def load_run(workdir: str | os.PathLike, checkpoint: str | int = "best", *, base_dtype: str | None = None
             ) -> tuple[nnx.Module, Any, ml_collections.ConfigDict, int]:
    """(model with the trained adapter active, tokenizer, config, step) from a training workdir. When the
    checkpoint `best` or `last` names cannot be read, the newest older readable one is used, with a warning;
    a step asked for by number must be readable. `base_dtype` loads the frozen base in that dtype and
    unquantised instead of as trained (a bfloat16 or QLoRA run merged into full-precision weights); the
    returned config is the run's own."""
    config = read_config(workdir)
    if is_ensemble(config):
        raise ValueError(f"{workdir} is an ensemble of {len(config.ensemble.members)} runs: `ftjax eval` scores it; "
                         "for anything else, use one of its members")
    build_config = config
    if base_dtype is not None:
        build_config = config.copy_and_resolve_references()
        build_config.model.dtype = base_dtype
        if "quantize" in build_config.model:
            build_config.model.quantize = "none"
    model = build_model(build_config)
    if config.model.get("init_from"):  # parts frozen by pattern are not in the checkpoints: they come from there
        init_from(model, config)
    es = config.train.early_stopping
    ckpts = Checkpoints(Workdir(workdir).checkpoints, keep=config.checkpoint.keep, metric=es.metric,
                        mode=es.mode, async_save=False)
    wanted = pick_step(ckpts, checkpoint)
    scanned = config.model.get("scan_layers", False)
    if scanned:  # the checkpoint holds the stacked layout training used
        stack_blocks(model)
    trainable = nnx.state(model, trainable_filter(config.peft))
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), trainable)
    older = sorted((s for s in ckpts.all_steps() if s < wanted), reverse=True)
    candidates = [wanted] if str(checkpoint).isdigit() else [wanted, *older]
    try:
        for i, step in enumerate(candidates):
            try:
                nnx.update(model, ckpts.restore_trainable(abstract, step))
                break
            except ShapeMismatch:
                raise
            except Exception as e:  # noqa: BLE001 - unreadable: try an older checkpoint, or report the last
                why = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}" if str(e) else type(e).__name__
                if i == len(candidates) - 1:
                    raise ValueError(f"{workdir}: the checkpoint at step {step} is unreadable ({why})") from None
                log.warning("checkpoint at step %d of %s is unreadable (%s); using an older one", step, workdir, why)
    finally:
        ckpts.close()
    if scanned:  # every tool after training (eval, export, adapter files) reads the unrolled blocks
        unstack_blocks(model)
    model.eval()
    return model, load_tokenizer(config.model.path), config, step


def split_init_from(spec: str) -> tuple[str, str]:
    """`WORKDIR[:best|last|STEP]` -> (workdir, checkpoint); the checkpoint defaults to best."""
    workdir, sep, which = spec.rpartition(":")
    if sep and (which in ("best", "last") or which.isdigit()):
        return workdir, which
    return spec, "best"


def init_from(model: nnx.Module, config: ml_collections.ConfigDict) -> dict[str, Any]:
    """Copy every trainable tensor (adapter and heads) that `config.model.init_from`'s run saved into `model`
    where the path exists here; a shape that differs is an error. Returns what was loaded, what starts fresh
    (e.g. the head of a new task) and what the source had that this run does not use."""
    workdir, which = split_init_from(config.model.init_from)
    source, _, source_config, step = load_run(workdir, which)
    if source_config.model.path != config.model.path:
        log.warning("model.init_from=%s was trained on %s; this run's base is %s", workdir, source_config.model.path,
                    config.model.path)
    every = lambda path, var: isinstance(var, nnx.Param)
    saved = dict(nnx.to_flat_state(nnx.state(source, trainable_filter(source_config.peft))))
    mine = dict(nnx.to_flat_state(nnx.state(model, every)))
    loaded = {}
    for path, var in saved.items():
        if path in mine:
            if mine[path].shape != var.shape:
                raise ValueError(f"model.init_from={workdir}: {'.'.join(map(str, path))} has shape {var.shape} "
                                 f"there, {mine[path].shape} here (same adapter rank and label set needed)")
            loaded[path] = mine[path].replace(jnp.asarray(np.asarray(var[...]), mine[path].dtype))
    nnx.update(model, nnx.from_flat_state(loaded))
    trainable = {p for p, _ in nnx.to_flat_state(nnx.state(model, trainable_filter(config.peft)))}
    name = lambda p: ".".join(map(str, p))
    report = {"workdir": workdir, "checkpoint": which, "step": step, "loaded": sorted(map(name, loaded)),
              "fresh": sorted(name(p) for p in trainable - loaded.keys()),
              "unused": sorted(name(p) for p in saved.keys() - mine.keys())}
    log.info("model.init_from=%s (step %d): %d tensors loaded, %d fresh, %d unused", workdir, step,
             len(report["loaded"]), len(report["fresh"]), len(report["unused"]))
    return report
