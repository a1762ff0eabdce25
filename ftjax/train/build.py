"""The model a run trains and restores: base model, adapter, and a head for every classification task."""

from __future__ import annotations

import jax.numpy as jnp
import ml_collections
from flax import nnx

from ftjax.data.config import label_set
from ftjax.models import from_pretrained
from ftjax.models.heads import add_head, head_name, head_type
from ftjax.peft.apply import apply_peft
from ftjax.tasks import task_configs


def build_model(config: ml_collections.ConfigDict) -> nnx.Module:
    """The base model with the run's adapter (freshly initialised) and its task heads."""
    model = from_pretrained(config.model.path, dtype=jnp.dtype(config.model.dtype))
    apply_peft(model, config.peft, nnx.Rngs(config.train.seed))
    for i, task in enumerate(task_configs(config).values()):
        kind = head_type(task)
        if kind != "lm":
            labels = label_set(task.data) if kind == "classification" else None
            add_head(model, labels, config.train.seed + i, head_name(task), task.head.get("pooling", "last"))
    return model
