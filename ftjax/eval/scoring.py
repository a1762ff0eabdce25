"""Teacher-forced scoring: the summed negative log-likelihood of each example's target tokens.

One number per example (not per batch, as the trainer's validation loss keeps), so perplexity gets a bootstrap
interval and two models can be compared example by example. The output head runs over time chunks, so a
262k-entry vocabulary never materialises [batch, seq, vocab] logits.
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

from ftjax.loss import token_nll


@functools.partial(jax.jit, static_argnames=("graphdef", "chunk"))
def _nll(graphdef, state, ids, mask, weights, chunk: int):
    model = nnx.merge(graphdef, state)
    positions = jnp.maximum(jnp.cumsum(mask, -1) - 1, 0).astype(jnp.int32)
    h, _ = model.hidden_states(ids, positions=positions, attention_mask=mask)
    h, targets, w = h[:, :-1], ids[:, 1:], weights[:, 1:]  # position t predicts token t + 1
    b, t, d = h.shape
    pad = -t % chunk
    h, targets, w = (jnp.pad(a, [(0, 0), (0, pad)] + [(0, 0)] * (a.ndim - 2)) for a in (h, targets, w))
    split = lambda a: jnp.moveaxis(a.reshape(b, -1, chunk, *a.shape[2:]), 1, 0)  # [chunks, b, chunk, ...]
    nll = jax.lax.map(lambda x: token_nll(model.logits(x[0]), x[1]), (split(h), split(targets)))
    nll = jnp.moveaxis(nll, 0, 1).reshape(b, -1)
    return jnp.sum(jnp.where(w, nll, 0.0), -1), jnp.sum(w, -1)


def sequence_nll(model: nnx.Module, examples: Sequence[dict], batch_size: int = 16, pad_id: int = 0,
                 chunk: int = 16, progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(summed NLL [n], target token count [n]) for examples {"input_ids", "loss_mask"} (ftjax.data.encode)."""
    if not examples:
        return np.zeros(0), np.zeros(0)
    graphdef, state = nnx.split(model)
    width = -(-max(len(e["input_ids"]) for e in examples) // 16) * 16  # one width: one compile
    nll, count = [], []
    for i in tqdm(range(0, len(examples), batch_size), desc="score", unit="batch", file=sys.stderr, leave=False,
                  disable=not progress or len(examples) <= batch_size):
        batch = list(examples[i:i + batch_size])
        real = len(batch)
        batch += [batch[0]] * (batch_size - real)  # a full last batch reuses the compiled shape
        ids = np.full((batch_size, width), pad_id, np.int32)
        mask = np.zeros((batch_size, width), bool)
        weights = np.zeros((batch_size, width), bool)
        for j, e in enumerate(batch):
            n = len(e["input_ids"])
            ids[j, :n], mask[j, :n], weights[j, :n] = e["input_ids"], True, np.asarray(e["loss_mask"], bool)
        s, k = _nll(graphdef, state, jnp.asarray(ids), jnp.asarray(mask), jnp.asarray(weights), chunk)
        nll.append(np.asarray(s)[:real])
        count.append(np.asarray(k)[:real])
    return np.concatenate(nll).astype(np.float64), np.concatenate(count).astype(np.float64)
