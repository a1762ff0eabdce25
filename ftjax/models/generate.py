"""Batched KV-cache generation: greedy, temperature, top-k, top-p, stop tokens, prompts of different lengths.

Prompts are left-padded; positions count real tokens only, so every row sees the positions it would see
alone. Prefill and the whole decode loop run in one jitted function (a `lax.while_loop` that exits early
once every row has hit a stop token).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ftjax.models.decoder import CausalLM


@dataclasses.dataclass(frozen=True)
class Sampling:
    """temperature 0 means greedy; top_k 0 and top_p 1 switch those filters off."""

    max_new_tokens: int = 64
    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    stop_token_ids: tuple[int, ...] = ()
    seed: int = 0

    def __post_init__(self):
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if not (math.isfinite(self.temperature) and self.temperature >= 0) or self.top_k < 0 \
                or not 0 < self.top_p <= 1:
            raise ValueError(f"need temperature >= 0, top_k >= 0, 0 < top_p <= 1; got {self.temperature}, "
                             f"{self.top_k}, {self.top_p}")


def sample_logits(logits: jax.Array, key: jax.Array, s: Sampling) -> jax.Array:
    """Next token ids [b] from float32 logits [b, v]."""
    if s.temperature == 0:
        return jnp.argmax(logits, -1).astype(jnp.int32)
    logits = logits / s.temperature
    neg = jnp.finfo(logits.dtype).min
    if s.top_k:
        kth = _largest_threshold(logits, lambda keep: jnp.sum(keep, -1) >= s.top_k)
        logits = jnp.where(logits < kth, neg, logits)
    if s.top_p < 1:
        # the smallest set of tokens whose probability reaches top_p (the top token always stays)
        p = jax.nn.softmax(logits, -1)
        cutoff = _largest_threshold(logits, lambda keep: jnp.sum(jnp.where(keep, p, 0.0), -1) >= s.top_p)
        logits = jnp.where(logits < cutoff, neg, logits)
    return jax.random.categorical(key, logits, -1).astype(jnp.int32)


def _largest_threshold(logits: jax.Array, enough, iterations: int = 32) -> jax.Array:
    """Per row [b, 1], the largest logit value t such that enough(logits >= t) holds, by bisection between the
    row's minimum and maximum: 32 halvings narrow it below a float32 step of typical logits, so the kept set is
    the top-k (or top-p) set up to exact ties. A sort of a 262k vocabulary costs seconds a step on a CPU."""
    lo, hi = logits.min(-1, keepdims=True), logits.max(-1, keepdims=True)
    ok_hi = enough(logits >= hi)[:, None]  # e.g. top_k=1: the maximum alone is enough

    def halve(_, bounds):
        lo, hi = bounds
        mid = lo + (hi - lo) / 2
        ok = enough(logits >= mid)[:, None]
        return jnp.where(ok, mid, lo), jnp.where(ok, hi, mid)

    lo, _ = jax.lax.fori_loop(0, iterations, halve, (lo, hi))
    return jnp.where(ok_hi, hi, lo)


@functools.partial(jax.jit, static_argnames=("graphdef", "sampling"))
def _generate(graphdef, state, ids, mask, sampling: Sampling, key):
    model = nnx.merge(graphdef, state)
    b, p = ids.shape
    n = sampling.max_new_tokens
    cache = model.init_cache(b, p + n)
    positions = jnp.maximum(jnp.cumsum(mask, -1) - 1, 0).astype(jnp.int32)
    h, cache = model.hidden_states(ids, positions=positions, attention_mask=mask, cache=cache)
    stops = jnp.asarray(sampling.stop_token_ids or (-1,), jnp.int32)

    def cond(c):
        i, _, _, _, _, done, _ = c
        return (i < n) & ~jnp.all(done)

    def body(c):
        i, cache, logits, pos, out, done, key = c
        key, sub = jax.random.split(key)
        tok = jnp.where(done, -1, sample_logits(logits, sub, sampling))
        out = out.at[:, i].set(tok)
        done = done | jnp.isin(tok, stops)
        h, cache = model.hidden_states(jnp.maximum(tok, 0)[:, None], positions=pos[:, None],
                                       attention_mask=jnp.ones((b, 1), bool), cache=cache)
        return i + 1, cache, model.logits(h[:, 0]), pos + 1, out, done, key

    init = (jnp.int32(0), cache, model.logits(h[:, -1]), positions[:, -1] + 1, jnp.full((b, n), -1, jnp.int32),
            jnp.zeros((b,), bool), key)
    return jax.lax.while_loop(cond, body, init)[4]


def bucket(n: int, minimum: int = 8) -> int:
    """The padded length for `n` tokens: the next of 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, ...
    (four steps per doubling: at most 25% padding, and a few compiled shapes per split)."""
    if n <= minimum:
        return minimum
    step = max(1 << max((n - 1).bit_length() - 3, 0), minimum)
    return -(-n // step) * step


def left_pad(prompts: Sequence[Sequence[int]], pad_id: int = 0, multiple: int | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
    """Left-padded ids and mask; the length is a `bucket` (or a multiple of `multiple`), so batches of similar
    prompts share one compile."""
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError("every prompt needs at least one token")
    longest = max(map(len, prompts))
    t = bucket(longest) if multiple is None else -(-longest // multiple) * multiple
    ids = np.full((len(prompts), t), pad_id, np.int32)
    mask = np.zeros((len(prompts), t), bool)
    for i, p in enumerate(prompts):
        ids[i, t - len(p):] = p
        mask[i, t - len(p):] = True
    return ids, mask


def generate(model: CausalLM, prompts: Sequence[Sequence[int]], sampling: Sampling = Sampling(),
             pad_id: int = 0, multiple: int | None = None) -> list[list[int]]:
    """New tokens for each prompt, cut before the first stop token; `multiple` pads prompts to a multiple of it
    instead of a bucket (one width for a whole job: one compile)."""
    ids, mask = left_pad(prompts, pad_id, multiple)
    if ids.shape[1] + sampling.max_new_tokens > model.config.max_position_embeddings and model.config.rope is None:
        raise ValueError(f"prompt + max_new_tokens exceeds the model's {model.config.max_position_embeddings} "
                         "learned positions")
    graphdef, state = nnx.split(model)
    # the seed travels as a traced key, so that batches with different seeds share one compiled program
    out = _generate(graphdef, state, jnp.asarray(ids), jnp.asarray(mask), dataclasses.replace(sampling, seed=0),
                    jax.random.key(sampling.seed))
    return cut_at_stops(np.asarray(out), sampling.stop_token_ids)


def cut_at_stops(rows: np.ndarray, stop_token_ids: Sequence[int]) -> list[list[int]]:
    """Each row's tokens (negative ones, unused slots, dropped) up to the first stop token."""
    results = []
    for row in rows:
        toks = [int(t) for t in row if t >= 0]
        cut = next((i for i, t in enumerate(toks) if t in stop_token_ids), len(toks))
        results.append(toks[:cut])
    return results
