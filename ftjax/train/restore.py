"""Rebuild a trained model from a workdir: base model + adapter + the trainable state of a checkpoint."""

from __future__ import annotations

import logging
import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from ftjax.data.config import label_set
from ftjax.models import from_pretrained
from ftjax.models.heads import add_head, head_type
from ftjax.models.tokenizer import load_tokenizer
from ftjax.peft.apply import apply_peft, trainable_filter
from ftjax.train.checkpoints import Checkpoints, ShapeMismatch
from ftjax.workdir import Workdir, read_config

log = logging.getLogger("ftjax.train")


def pick_step(ckpts: Checkpoints, which: str | int) -> int:
    """The step `which` names: best (the best evaluated one, else the newest), last, or a step number."""
    steps = ckpts.all_steps()
    if not steps:
        raise FileNotFoundError(f"no checkpoints in {ckpts.directory}")
    if which == "last":
        return max(steps)
    if which == "best":
        return ckpts.best_step if ckpts.best_step is not None else max(steps)
    if not str(which).isdigit():
        raise ValueError(f"--checkpoint={which!r}: use best, last or a step number (have {sorted(steps)})")
    step = int(which)
    if step not in steps:
        raise ValueError(f"no checkpoint at step {step}; have {sorted(steps)}")
    return step


def load_run(workdir: str | os.PathLike, checkpoint: str | int = "best"
             ) -> tuple[nnx.Module, Any, ml_collections.ConfigDict, int]:
    """(model with the trained adapter active, tokenizer, config, step) from a training workdir. When the
    checkpoint `best` or `last` names cannot be read, the newest older readable one is used, with a warning;
    a step asked for by number must be readable."""
    config = read_config(workdir)
    model = from_pretrained(config.model.path, dtype=jnp.dtype(config.model.dtype))
    apply_peft(model, config.peft, nnx.Rngs(config.train.seed))
    if head_type(config) != "lm":
        add_head(model, label_set(config.data), config.train.seed)
    es = config.train.early_stopping
    ckpts = Checkpoints(Workdir(workdir).checkpoints, keep=config.checkpoint.keep, metric=es.metric,
                        mode=es.mode, async_save=False)
    wanted = pick_step(ckpts, checkpoint)
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
    model.eval()
    return model, load_tokenizer(config.model.path), config, step
