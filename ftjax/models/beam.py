"""Batched beam search with the KV cache: width, length penalty, no-repeat n-grams, stop tokens.

The same fixed-shape algorithm as transformers' beam search (so tests can require equal tokens): each step
keeps the best 2 x width continuations of all beams (enough that width of them do not stop), continues the
width best that did not stop, and moves the ones that stopped among the first width into the finished set,
scored by sum of log-probabilities / (generated length ** length_penalty). The search ends when no running
beam can beat the worst finished one (transformers' default heuristic, early_stopping=False) or at
max_new_tokens. Prefill, every step and the cache reordering run in one jitted `lax.while_loop`.
`beam_search` returns the best hypothesis per prompt, `beam_candidates` all width finished ones (n-best).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ftjax.models.generate import cut_at_stops, left_pad
from ftjax.models.layers import cache_rows

NEG = -1.0e9


@dataclasses.dataclass(frozen=True)
class Beam:
    num_beams: int = 4
    max_new_tokens: int = 64
    length_penalty: float = 1.0
    no_repeat_ngram_size: int = 0
    stop_token_ids: tuple[int, ...] = ()

    def __post_init__(self):
        if self.num_beams < 1 or self.max_new_tokens < 1 or self.no_repeat_ngram_size < 0:
            raise ValueError(f"need num_beams >= 1, max_new_tokens >= 1, no_repeat_ngram_size >= 0; got "
                             f"{self.num_beams}, {self.max_new_tokens}, {self.no_repeat_ngram_size}")


def _banned(seq: jax.Array, length: jax.Array, n: int, vocab: int) -> jax.Array:
    """[rows, vocab] True for tokens that would repeat an n-gram of seq[:, :length] (prompt included)."""
    rows, width = seq.shape
    starts = jnp.arange(width - n + 1)
    tail = jax.vmap(lambda s: jax.lax.dynamic_slice(s, (length - n + 1,), (n - 1,)))(seq)  # last n-1 tokens
    grams = jnp.stack([seq[:, i:i + width - n + 1] for i in range(n)], -1)  # [rows, starts, n]
    hit = jnp.all(grams[..., :-1] == tail[:, None], -1) & (starts[None] + n - 1 < length)
    ban = jnp.zeros((rows, vocab), jnp.int32)
    return ban.at[jnp.arange(rows)[:, None], grams[..., -1]].max(hit.astype(jnp.int32)) > 0


@functools.partial(jax.jit, static_argnames=("graphdef", "beam"))
def _search(graphdef, state, ids, mask, beam: Beam):
    model = nnx.merge(graphdef, state)
    b, p = ids.shape
    k, n = beam.num_beams, beam.max_new_tokens
    keep = max(2, 1 + len(beam.stop_token_ids)) * k
    vocab = model.config.vocab_size
    ids, mask = jnp.repeat(ids, k, 0), jnp.repeat(mask, k, 0)  # [b * k, p]
    positions = jnp.maximum(jnp.cumsum(mask, -1) - 1, 0).astype(jnp.int32)
    h, cache = model.hidden_states(ids, positions=positions, attention_mask=mask, cache=model.init_cache(b * k, p + n))
    stops = jnp.asarray(beam.stop_token_ids or (-1,), jnp.int32)
    gather = lambda x, idx: jnp.take_along_axis(x, idx.reshape(idx.shape + (1,) * (x.ndim - 2)), 1)  # [b, m, ...]

    def body(c):
        step, cache, logits, pos, seq, run_scores, fin_seq, fin_scores, finished, open_ = c
        logprobs = jax.nn.log_softmax(logits, -1)  # [b * k, v]
        if beam.no_repeat_ngram_size:
            logprobs = jnp.where(_banned(seq, p + step, beam.no_repeat_ngram_size, vocab), -jnp.inf, logprobs)
        total = (logprobs + run_scores.reshape(-1, 1)).reshape(b, k * vocab)
        top_scores, top = jax.lax.top_k(total, keep)  # [b, keep]
        src, tok = top // vocab, (top % vocab).astype(jnp.int32)
        cand = gather(seq.reshape(b, k, -1), src).at[:, :, p + step].set(tok)  # [b, keep, p + n]
        stopped = jnp.isin(tok, stops) | (step + 1 == n)
        # the width best that did not stop run on
        alive = top_scores + stopped * NEG
        nxt = jax.lax.top_k(alive, k)[1]
        run_scores = gather(alive, nxt)
        seq = gather(cand, nxt).reshape(b * k, -1)
        rows = (gather(src, nxt) + jnp.arange(b)[:, None] * k).reshape(-1)  # which old beam each continues
        # those that stopped among the first width join the finished set
        scored = top_scores / ((step + 1.0) ** beam.length_penalty)
        new = stopped & (jnp.arange(keep) < k)[None]
        scored = scored + (~open_) * NEG + (~new) * NEG
        merged = jnp.concatenate([fin_scores, scored], 1)
        best = jax.lax.top_k(merged, k)[1]
        fin_scores = gather(merged, best)
        fin_seq = gather(jnp.concatenate([fin_seq, cand], 1), best)
        finished = gather(jnp.concatenate([finished, new], 1), best)
        # decode the continuing beams' tokens, with their caches reordered
        cache = cache_rows(cache, rows)
        last = seq[:, p + step]
        pos = pos[rows] + 1
        h, cache = model.hidden_states(last[:, None], positions=pos[:, None], attention_mask=jnp.ones((b * k, 1), bool),
                                       cache=cache)
        # can a running beam still beat the worst finished one? (transformers' early_stopping=False heuristic)
        best_running = run_scores[:, :1] / ((step + 1.0) ** beam.length_penalty)
        worst = jnp.where(finished, fin_scores.min(1, keepdims=True), NEG)
        open_ = open_ & jnp.any(best_running > worst, -1, keepdims=True)
        return (step + 1, cache, model.logits(h[:, 0]), pos, seq, run_scores, fin_seq, fin_scores, finished, open_)

    def cond(c):
        return (c[0] < n) & jnp.any(c[9])  # steps left, and a prompt whose beams can still improve

    run_scores = jnp.tile(jnp.asarray([0.0] + [NEG] * (k - 1), jnp.float32), b)
    seq = jnp.concatenate([ids, jnp.zeros((b * k, n), jnp.int32)], 1)
    init = (jnp.int32(0), cache, model.logits(h[:, -1]), positions[:, -1], seq, run_scores.reshape(b, k),
            jnp.zeros((b, k, p + n), jnp.int32), jnp.full((b, k), NEG, jnp.float32), jnp.zeros((b, k), bool),
            jnp.ones((b, 1), bool))
    out = jax.lax.while_loop(cond, body, init)
    # every prompt ends with width finished hypotheses: its search stops only then, or at max_new_tokens where
    # every candidate stops
    return out[6][:, :, p:], out[7]  # the finished hypotheses per prompt, best first, and their scores


def beam_candidates(model: nnx.Module, prompts: Sequence[Sequence[int]], beam: Beam = Beam(), pad_id: int = 0
                    ) -> list[list[tuple[list[int], float]]]:
    """Each prompt's num_beams finished hypotheses, best first (transformers' `num_return_sequences`), as (new
    tokens cut before the first stop token, length-penalised score): the n-best list a reranker picks from."""
    ids, mask = left_pad(prompts, pad_id)
    graphdef, state = nnx.split(model)
    seqs, scores = map(np.asarray, _search(graphdef, state, jnp.asarray(ids), jnp.asarray(mask), beam))
    return [list(zip(cut_at_stops(rows, beam.stop_token_ids), map(float, row_scores)))
            for rows, row_scores in zip(seqs, scores)]


def beam_search(model: nnx.Module, prompts: Sequence[Sequence[int]], beam: Beam = Beam(), pad_id: int = 0
                ) -> list[list[int]]:
    """The best beam's new tokens for each prompt, cut before the first stop token."""
    return [hypotheses[0][0] for hypotheses in beam_candidates(model, prompts, beam, pad_id)]
