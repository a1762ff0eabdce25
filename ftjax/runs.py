"""Rebuild a trained model from a workdir: base model + adapter + the trainable state of a checkpoint."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from ftjax.checkpoint import Checkpoints
from ftjax.models import from_pretrained
from ftjax.peft.apply import apply_peft, trainable_filter
from ftjax.tokenizer import load_tokenizer


def load_config_file(path: str | Path, variant: str | None = None) -> ml_collections.ConfigDict:
    """`get_config(variant)` of a config file (what --config=PATH[:variant] does on the command line)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such config file: {path}")
    spec = importlib.util.spec_from_file_location(f"ftjax_config_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(variant) if variant else module.get_config()


def resolved_config(workdir: str | Path) -> ml_collections.ConfigDict:
    """The config a workdir was trained with."""
    path = Path(workdir) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{workdir} has no config.json (not an ftjax workdir)")
    return ml_collections.ConfigDict(json.loads(path.read_text()))


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


def load_run(workdir: str | Path, checkpoint: str | int = "best") -> tuple[nnx.Module, Any, ml_collections.ConfigDict, int]:
    """(model with the trained adapter active, tokenizer, config, step) from a training workdir."""
    config = resolved_config(workdir)
    model = from_pretrained(config.model.path, dtype=jnp.dtype(config.model.dtype))
    apply_peft(model, config.peft, nnx.Rngs(config.train.seed))
    es = config.train.early_stopping
    ckpts = Checkpoints(Path(workdir) / "checkpoints", keep=config.checkpoint.keep, metric=es.metric,
                        mode=es.mode, async_save=False)
    step = pick_step(ckpts, checkpoint)
    trainable = nnx.state(model, trainable_filter(config.peft))
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), trainable)
    nnx.update(model, ckpts.restore_trainable(abstract, step))
    ckpts.close()
    model.eval()
    return model, load_tokenizer(config.model.path), config, step
