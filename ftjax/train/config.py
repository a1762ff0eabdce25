"""The `train` and `checkpoint` blocks of an experiment config: steps, batch, optimiser, schedule, evaluation cadence.

    steps / epochs             a fixed number of steps, or (steps=0) epochs over the training split
    batch_size, grad_accum_steps   rows per optimiser step, split into that many micro-batches
    learning_rate, schedule (constant | linear | cosine), warmup_steps, weight_decay, max_grad_norm
    eval_every, eval_batch_size    validation cadence and batch
    log_every, seed, loss_chunk    metric log cadence, the run's seed, target positions per head chunk
    early_stopping             metric (val_loss, val_<task metric>), mode (min | max), patience (0 = off), min_delta

checkpoint: save `every` N steps (and at every evaluation and the last step), keep the newest `keep` plus the
best, write asynchronously (`async_save`).
"""

from __future__ import annotations

import ml_collections


def default_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(dict(
        steps=0, epochs=2, batch_size=8, grad_accum_steps=1, learning_rate=1e-3, schedule="cosine", warmup_steps=8,
        weight_decay=0.0, max_grad_norm=1.0, eval_every=20, eval_batch_size=16, log_every=1, seed=0, loss_chunk=256,
        early_stopping=dict(metric="val_loss", mode="min", patience=0, min_delta=0.0)))


def checkpoint_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(dict(every=20, keep=2, async_save=True))
