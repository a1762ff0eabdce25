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
    return token_nll_hits(logits, targets, smoothing)[0]


def token_nll_hits(logits: Array, targets: Array, smoothing: float = 0.0) -> tuple[Array, Array]:
    """(token_nll, whether the target has the top logit) from one max over the vocabulary: an argmax of its own
    cost as much as the log-sum-exp on a 262k-entry head."""
    nll, hit, _ = _nll_hits_lse(logits, targets, smoothing)
    return nll, hit


def _nll_hits_lse(logits: Array, targets: Array, smoothing: float) -> tuple[Array, Array, Array]:
    """token_nll_hits and the log-sum-exp it is built on (the fused head's softmax is exp(logits - lse))."""
    logits = logits.astype(jnp.float32)
    top = jax.lax.stop_gradient(jnp.max(logits, -1))
    lse = top + jnp.log(jnp.sum(jnp.exp(logits - top[..., None]), -1))
    picked = jnp.take_along_axis(logits, targets[..., None], -1)[..., 0]
    nll = lse - picked
    if smoothing:
        nll = (1 - smoothing) * nll + smoothing * (lse - logits.mean(-1))
    return nll, picked >= top, lse


def target_loss_sums(head: Callable[[Array], Array], hidden: Array, targets: Array, index: Array, valid: Array,
                     chunk: int = 256, smoothing: float = 0.0, values: Array | None = None, fused: bool = False,
                     weights: Array | None = None) -> tuple[Array, Array, Array]:
    """(sum of NLL, number of targets, number of argmax hits) over the gathered target positions; with
    `weights` [k] (each target's example weight, e.g. synthetic rows down-weighted) the NLL sum and the target
    count are weighted, so their ratio is the weighted mean.

    hidden [b, t, d], targets [b, t], index/valid [k] (flat positions into b * t). Sums, not means, so that
    gradient accumulation can normalise by the total target count of all micro-batches. `head` is the LM head
    or a task head (ftjax.models.heads): a classification example's one target is its label index. Given
    `values` [b, t] (a regression head), the loss is the squared error of the head's one output against them
    instead, and there are no hits. `fused` (only for a head whose own weights do not train, e.g. the frozen LM
    head under LoRA): each chunk's gradient with respect to its hidden states is computed in the forward pass
    from the softmax (`_fused_nll`), so the backward pass does not recompute the chunk's logits: two head matmuls
    per chunk instead of three, and still no [targets, vocab] array kept.
    """
    d = hidden.shape[-1]
    h = jnp.take(hidden.reshape(-1, d), index, axis=0)
    y = jnp.take((targets if values is None else values).reshape(-1), index, axis=0)
    k = index.shape[0]
    chunk = min(chunk, k)
    pad = -k % chunk
    w = valid if weights is None else valid * weights
    count = jnp.sum(w).astype(jnp.float32)
    h, y, m = (jnp.pad(a, [(0, pad)] + [(0, 0)] * (a.ndim - 1)) for a in (h, y, w))
    n = (k + pad) // chunk
    if fused and values is None:
        nll, hits = _fused_nll(head, h.reshape(n, chunk, d), y.reshape(n, chunk), m.reshape(n, chunk), smoothing)
        return nll, count, hits

    @jax.checkpoint
    def one(h, y, m):
        out = head(h)
        if values is not None:
            return _masked_sum(jnp.square(out[..., 0] - y.astype(jnp.float32)), m), jnp.int32(0)
        nll, hit = token_nll_hits(out, y, smoothing)
        return _masked_sum(nll, m), jnp.sum(hit & (m > 0))

    def body(carry, xs):
        s, c = one(*xs)
        return (carry[0] + s, carry[1] + c), None

    (nll, hits), _ = jax.lax.scan(body, (jnp.float32(0), jnp.int32(0)),
                                  (h.reshape(n, chunk, d), y.reshape(n, chunk), m.reshape(n, chunk)))
    return nll, count, hits


def _masked_sum(x: Array, m: Array) -> Array:
    """sum(x * m) over the targets (m > 0) only: off-target positions (padding gathers position 0, whose target
    may be no class of a task head) can be NaN, and NaN * 0 is NaN."""
    return jnp.sum(jnp.where(m > 0, x * m, 0.0))


def _fused_nll(head: Callable[[Array], Array], h: Array, y: Array, m: Array, smoothing: float
               ) -> tuple[Array, Array]:
    """(sum of NLL, argmax hits) over chunks h [n, c, d], y/m [n, c] (m: a target's weight, 0 off
    target), differentiable in h only. The forward
    pass of a gradient computation also forms dNLL/dh: d logits = softmax - (1 - e) onehot - e / V at valid
    rows, pulled back through the head; the backward pass only scales it."""

    def sums(nll: Array, hit: Array, mc: Array) -> tuple[Array, Array]:
        return _masked_sum(nll, mc), jnp.sum(hit & (mc > 0))

    def scan_chunks(one: Callable, h: Array) -> tuple[tuple[Array, Array], Array | None]:
        def body(carry, xs):
            (s, c), extra = one(*xs)
            return (carry[0] + s, carry[1] + c), extra

        return jax.lax.scan(body, (jnp.float32(0), jnp.int32(0)), (h, y, m))

    @jax.custom_vjp
    def run(h: Array) -> tuple[Array, Array]:
        return scan_chunks(lambda hc, yc, mc: (sums(*token_nll_hits(head(hc), yc, smoothing), mc), None), h)[0]

    def forward(h: Array) -> tuple[tuple[Array, Array], Array]:
        def one(hc, yc, mc):
            out, pullback = jax.vjp(head, hc)
            logits = out.astype(jnp.float32)
            nll, hit, lse = _nll_hits_lse(logits, yc, smoothing)
            mf = mc.astype(jnp.float32)[:, None]
            d = (jnp.exp(logits - lse[:, None]) - smoothing / logits.shape[-1]) * mf  # softmax, from the lse
            d = d.at[jnp.arange(d.shape[0]), yc].add(-(1 - smoothing) * mf[:, 0])
            return sums(nll, hit, mc), pullback(d.astype(out.dtype))[0]

        return scan_chunks(one, h)

    def backward(dh: Array, g: tuple[Array, Array]) -> tuple[Array]:
        return ((g[0] * dh).astype(dh.dtype),)

    run.defvjp(forward, backward)
    return run(h)


PREFERENCE_LOSSES = ("dpo", "ipo", "orpo", "simpo")
NEEDS_REFERENCE = ("dpo", "ipo")


def target_logprobs(head: Callable[[Array], Array], hidden: Array, targets: Array, index: Array,
                    chunk: int = 256) -> Array:
    """log p(target) at each gathered target position [k] (float32), the head applied in checkpointed chunks."""
    d = hidden.shape[-1]
    h = jnp.take(hidden.reshape(-1, d), index, axis=0)
    y = jnp.take(targets.reshape(-1), index, axis=0)
    k = index.shape[0]
    chunk = min(chunk, k)
    pad = -k % chunk
    h, y = jnp.pad(h, [(0, pad), (0, 0)]), jnp.pad(y, [(0, pad)])

    @jax.checkpoint
    def one(hc, yc):
        return -token_nll(head(hc), yc)

    out = jax.lax.map(lambda xs: one(*xs), (h.reshape(-1, chunk, d), y.reshape(-1, chunk)))
    return out.reshape(-1)[:k]


def preference_losses(kind: str, chosen: Array, rejected: Array, ref_chosen: Array | None, ref_rejected: Array | None,
                      chosen_len: Array, rejected_len: Array, beta: float, label_smoothing: float = 0.0,
                      gamma: float = 0.0, orpo_weight: float = 1.0) -> tuple[Array, Array, Array]:
    """(loss, chosen reward, rejected reward) per pair, from summed sequence log-probs [pairs] and token counts.

    dpo   -(1-e) log s(b h) - e log s(-b h), h = (chosen - ref_chosen) - (rejected - ref_rejected)   (Rafailov et
          al. 2023; e = label_smoothing, the conservative DPO of Mitchell 2023)
    ipo   (h - 1 / (2 b))^2 on the same log-ratio difference                                          (Azar et al. 2023)
    orpo  -mean log p(chosen) per token - w log s(log odds(chosen) - log odds(rejected)), odds from the
          per-token mean log-prob: log odds = m - log(1 - exp(m)); no reference model                  (Hong et al. 2024)
    simpo -(1-e) log s(b (mc - mr) - g) - e log s(-(b (mc - mr) - g)), m = mean log-prob per token; no
          reference model                                                                              (Meng et al. 2024)
    Rewards: b times the log-ratio to the reference (dpo, ipo), b times the mean log-prob (orpo, simpo)."""
    sig = jax.nn.log_sigmoid
    if kind in NEEDS_REFERENCE:
        rc, rr = chosen - ref_chosen, rejected - ref_rejected
        h = rc - rr
        if kind == "dpo":
            loss = -(1 - label_smoothing) * sig(beta * h) - label_smoothing * sig(-beta * h)
        else:
            loss = jnp.square(h - 1 / (2 * beta))
        return loss, beta * rc, beta * rr
    mc, mr = chosen / jnp.maximum(chosen_len, 1), rejected / jnp.maximum(rejected_len, 1)
    if kind == "orpo":
        log_odds = lambda m: m - jnp.log1p(-jnp.exp(jnp.minimum(m, -1e-6)))
        loss = -mc - orpo_weight * sig(log_odds(mc) - log_odds(mr))
    elif kind == "simpo":
        z = beta * (mc - mr) - gamma
        loss = -(1 - label_smoothing) * sig(z) - label_smoothing * sig(-z)
    else:
        raise ValueError(f"unknown preference loss {kind!r}; choose from {', '.join(PREFERENCE_LOSSES)}")
    return loss, beta * mc, beta * mr
