"""optax AdamW with warmup + constant/linear/cosine decay, gradient clipping, and weight decay on matrices."""

from __future__ import annotations

import jax
import optax

from ftjax.train.config import SCHEDULES


def schedule(kind: str, peak: float, total_steps: int, warmup_steps: int) -> optax.Schedule:
    if kind not in SCHEDULES:
        raise ValueError(f"unknown train.schedule {kind!r}; choose from: {', '.join(SCHEDULES)}")
    warmup_steps = min(warmup_steps, max(total_steps - 1, 0))
    decay_steps = max(total_steps - warmup_steps, 1)
    decay = {
        "constant": optax.constant_schedule(peak),
        "linear": optax.linear_schedule(peak, 0.0, decay_steps),
        "cosine": optax.cosine_decay_schedule(peak, decay_steps),
    }[kind]
    if warmup_steps == 0:
        return decay
    return optax.join_schedules([optax.linear_schedule(0.0, peak, warmup_steps), decay], [warmup_steps])


def optimizer(train_cfg, lr: optax.Schedule) -> optax.GradientTransformation:
    """AdamW over the trainable state with learning-rate schedule `lr`; no weight decay on vectors (norms,
    biases, DoRA magnitudes)."""
    decay_mask = lambda params: jax.tree.map(lambda p: p.ndim >= 2, params)
    chain = [optax.adamw(lr, b1=0.9, b2=0.999, eps=1e-8, weight_decay=train_cfg.weight_decay, mask=decay_mask)]
    if train_cfg.max_grad_norm > 0:
        chain.insert(0, optax.clip_by_global_norm(train_cfg.max_grad_norm))
    return optax.chain(*chain)
