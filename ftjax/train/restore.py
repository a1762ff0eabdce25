"""Rebuild a trained model from a workdir: base model + adapter + the trainable state of a checkpoint."""

from __future__ import annotations

import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from ftjax.models import from_pretrained
from ftjax.models.tokenizer import load_tokenizer
from ftjax.peft.apply import apply_peft, trainable_filter
from ftjax.train.checkpoints import Checkpoints
from ftjax.workdir import Workdir, read_config


def pick_step(ckpts: Checkpoints, which: str | int) -> int:
    steps = ckpts.all_steps()
    if not steps:
        raise FileNotFoundError(f"no checkpoints in {ckpts.directory}")
    if which == "last":
        return max(steps)
    if which == "best":
        return ckpts.best_step if ckpts.best_step is not None else max(steps)
    step = int(which)
    if step not in steps:
        raise ValueError(f"no checkpoint at step {step}; have {sorted(steps)}")
    return step


def load_run(workdir: str | os.PathLike, checkpoint: str | int = "best"
             ) -> tuple[nnx.Module, Any, ml_collections.ConfigDict, int]:
    """(model with the trained adapter active, tokenizer, config, step) from a training workdir."""
    config = read_config(workdir)
    model = from_pretrained(config.model.path, dtype=jnp.dtype(config.model.dtype))
    apply_peft(model, config.peft, nnx.Rngs(config.train.seed))
    es = config.train.early_stopping
    ckpts = Checkpoints(Workdir(workdir).checkpoints, keep=config.checkpoint.keep, metric=es.metric,
                        mode=es.mode, async_save=False)
    step = pick_step(ckpts, checkpoint)
    trainable = nnx.state(model, trainable_filter(config.peft))
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), trainable)
    nnx.update(model, ckpts.restore_trainable(abstract, step))
    ckpts.close()
    model.eval()
    return model, load_tokenizer(config.model.path), config, step
