"""Teacher-forced scoring: the summed negative log-likelihood of each example's target tokens.

One number per example (not per batch, as the trainer's validation loss keeps), so perplexity gets a bootstrap
interval and two models can be compared example by example. As in the training loss (ftjax/loss.py), the output
head runs only at positions whose next token is a target, gathered and in chunks: a 262k-entry vocabulary
costs nothing at prompt positions. Batch widths come in a few buckets (generate.bucket), so a split compiles a
handful of times.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from tqdm import tqdm

from ftjax.loss import target_positions, token_nll_hits
from ftjax.models.generate import bucket


@functools.partial(jax.jit, static_argnames=("graphdef", "chunk"))
def _nll(graphdef, state, ids, mask, index, valid, chunk: int):
    """Per-row (NLL sum, target count, targets that are the argmax); index/valid [k]: flat positions (into b * t)
    whose next token is a target."""
    model = nnx.merge(graphdef, state)
    positions = jnp.maximum(jnp.cumsum(mask, -1) - 1, 0).astype(jnp.int32)
    h, _ = model.hidden_states(ids, positions=positions, attention_mask=mask)
    b, t, d = h.shape
    targets = jnp.roll(ids, -1, axis=1).reshape(-1)  # position t predicts token t + 1
    k = index.shape[0]
    pad = -k % chunk
    index, valid = jnp.pad(index, (0, pad)), jnp.pad(valid, (0, pad))
    hs = jnp.take(h.reshape(-1, d), index, axis=0).reshape(-1, chunk, d)
    ys = jnp.take(targets, index).reshape(-1, chunk)
    nll, hit = jax.lax.map(lambda x: token_nll_hits(model.logits(x[0]), x[1]), (hs, ys))
    nll, hit = nll.reshape(-1), hit.reshape(-1)
    rows = index // t
    return (jax.ops.segment_sum(jnp.where(valid, nll, 0.0), rows, b),
            jax.ops.segment_sum(valid.astype(jnp.int32), rows, b),
            jax.ops.segment_sum((valid & hit).astype(jnp.int32), rows, b))


def sequence_nll(model: nnx.Module, examples: Sequence[dict], batch_size: int = 16, pad_id: int = 0,
                 chunk: int = 64, progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(summed NLL [n], target token count [n]) for examples {"input_ids", "loss_mask"} (ftjax.data.encode)."""
    return sequence_scores(model, examples, batch_size, pad_id, chunk, progress)[:2]


def sequence_scores(model: nnx.Module, examples: Sequence[dict], batch_size: int = 16, pad_id: int = 0,
                    chunk: int = 64, progress: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """sequence_nll's figures and, per example, how many target tokens are the model's argmax (all of them:
    greedy decoding would produce the target)."""
    if not examples:
        return np.zeros(0), np.zeros(0), np.zeros(0)
    graphdef, state = nnx.split(model)
    nll, count, hits = [], [], []
    for i in tqdm(range(0, len(examples), batch_size), desc="score", unit="batch", file=sys.stderr, leave=False,
                  disable=not progress or len(examples) <= batch_size):
        batch = list(examples[i:i + batch_size])
        real = len(batch)
        batch += [batch[0]] * (batch_size - real)  # a full last batch reuses the compiled shape
        width = bucket(max(len(e["input_ids"]) for e in batch))
        ids = np.full((batch_size, width), pad_id, np.int32)
        mask = np.zeros((batch_size, width), bool)
        predicts = np.zeros((batch_size, width), bool)  # positions whose next token is a target
        for j, e in enumerate(batch):
            n = len(e["input_ids"])
            ids[j, :n], mask[j, :n] = e["input_ids"], True
            predicts[j, :n - 1] = np.asarray(e["loss_mask"][1:], bool)
        index, valid = target_positions(predicts)
        s, k, h = _nll(graphdef, state, jnp.asarray(ids), jnp.asarray(mask), jnp.asarray(index),
                       jnp.asarray(valid), min(chunk, index.shape[0]))
        nll.append(np.asarray(s)[:real])
        count.append(np.asarray(k)[:real])
        hits.append(np.asarray(h)[:real])
    return tuple(np.concatenate(x).astype(np.float64) for x in (nll, count, hits))
