"""Masked next-token cross-entropy on target tokens only, with the output head applied in chunks.

The [batch, seq, vocab] logits are never built: the host lists the positions whose next token is a target
(`target_positions`), the step gathers only those hidden states, and the head runs over them in chunks
whose logits are recomputed in the backward pass (jax.checkpoint). With Gemma's 262k-entry head and a loss on
completions only, this removes most of a step's FLOPs and memory.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array


def target_positions(loss_mask: np.ndarray, minimum: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Flat indices of the True entries of `loss_mask` [..., b, t] per leading group, padded to a shared
    power-of-two length (few distinct shapes, few compiles); returns (index [..., k], valid [..., k])."""
    groups = loss_mask.reshape(-1, loss_mask.shape[-2] * loss_mask.shape[-1])
    most = int(groups.sum(-1).max()) if groups.size else 0
    k = max(minimum, 1 << max(most - 1, 0).bit_length())
    k = min(k, groups.shape[-1])
    index = np.zeros((groups.shape[0], k), np.int32)
    valid = np.zeros((groups.shape[0], k), bool)
    for g, row in enumerate(groups):
        found = np.flatnonzero(row)
        index[g, :len(found)] = found
        valid[g, :len(found)] = True
    return index.reshape(*loss_mask.shape[:-2], k), valid.reshape(*loss_mask.shape[:-2], k)


def token_nll(logits: Array, targets: Array, smoothing: float = 0.0) -> Array:
    """-log p(target) per position, float32; with label `smoothing` e, (1 - e) of it plus e times the mean
    -log p over all classes."""
    logits = logits.astype(jnp.float32)
    lse = jax.nn.logsumexp(logits, -1)
    nll = lse - jnp.take_along_axis(logits, targets[..., None], -1)[..., 0]
    if smoothing:
        nll = (1 - smoothing) * nll + smoothing * (lse - logits.mean(-1))
    return nll


def target_loss_sums(head: Callable[[Array], Array], hidden: Array, targets: Array, index: Array, valid: Array,
                     chunk: int = 256, smoothing: float = 0.0, values: Array | None = None
                     ) -> tuple[Array, Array, Array]:
    """(sum of NLL, number of targets, number of argmax hits) over the gathered target positions.

    hidden [b, t, d], targets [b, t], index/valid [k] (flat positions into b * t). Sums, not means, so that
    gradient accumulation can normalise by the total target count of all micro-batches. `head` is the LM head
    or a task head (ftjax.models.heads): a classification example's one target is its label index. Given
    `values` [b, t] (a regression head), the loss is the squared error of the head's one output against them
    instead, and there are no hits.
    """
    d = hidden.shape[-1]
    h = jnp.take(hidden.reshape(-1, d), index, axis=0)
    y = jnp.take((targets if values is None else values).reshape(-1), index, axis=0)
    k = index.shape[0]
    chunk = min(chunk, k)
    pad = -k % chunk
    h, y, m = (jnp.pad(a, [(0, pad)] + [(0, 0)] * (a.ndim - 1)) for a in (h, y, valid))
    n = (k + pad) // chunk

    @jax.checkpoint
    def one(h, y, m):
        out = head(h)
        if values is not None:
            return jnp.sum(jnp.square(out[..., 0] - y.astype(jnp.float32)) * m), jnp.int32(0)
        return jnp.sum(token_nll(out, y, smoothing) * m), jnp.sum((jnp.argmax(out, -1) == y) & m)

    def body(carry, xs):
        s, c = one(*xs)
        return (carry[0] + s, carry[1] + c), None

    (nll, hits), _ = jax.lax.scan(body, (jnp.float32(0), jnp.int32(0)),
                                  (h.reshape(n, chunk, d), y.reshape(n, chunk), m.reshape(n, chunk)))
    return nll, jnp.sum(valid).astype(jnp.float32), hits
