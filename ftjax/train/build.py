"""The model a run trains and restores: base model, adapter, and a head for every classification task."""

from __future__ import annotations

import logging
from typing import Any

import jax.numpy as jnp
import ml_collections
from flax import nnx

from ftjax.data.config import label_set
from ftjax.models import from_pretrained
from ftjax.models.heads import add_head, head_name, head_type
from ftjax.models.quantize import quantize_base
from ftjax.peft.apply import apply_peft
from ftjax.tasks import task_configs

log = logging.getLogger("ftjax.train")


def build_model(config: ml_collections.ConfigDict, mesh: Any = None, rules: str | dict = "fsdp") -> nnx.Module:
    """The base model with the run's adapter (freshly initialised), its task heads and attention kernel; given a
    mesh, the base weights are loaded straight onto it (from_pretrained)."""
    model = from_pretrained(config.model.path, dtype=jnp.dtype(config.model.dtype), mesh=mesh, rules=rules)
    quantize = config.model.get("quantize", "none")
    if quantize != "none" and config.peft.method == "full":
        raise ValueError(f"model.quantize={quantize} freezes the base; full fine-tuning trains it (use an adapter)")
    quantize_base(model, quantize)
    attention, why = model.set_attention(config.model.get("attention", "auto"), mesh)
    log.info("attention: %s (%s)", attention, why)
    apply_peft(model, config.peft, nnx.Rngs(config.train.seed))
    for i, task in enumerate(task_configs(config).values()):
        kind = head_type(task)
        if kind != "lm":
            labels = label_set(task.data) if kind == "classification" else None
            add_head(model, labels, config.train.seed + i, head_name(task), task.head.get("pooling", "last"))
    return model
