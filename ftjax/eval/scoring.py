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
from ftjax.models.generate import bucket, left_pad
from ftjax.models.layers import cache_rows


def _picked_nll(model: nnx.Module, h: jax.Array, targets: jax.Array, index: jax.Array, chunk: int
                ) -> tuple[jax.Array, jax.Array]:
    """(NLL, whether it is the argmax) of targets[index] given hidden states h[index] ([n, d], [n]): the output
    head runs on `chunk` gathered positions at a time (len(index) is a multiple of chunk)."""
    hs = jnp.take(h, index, axis=0).reshape(-1, chunk, h.shape[-1])
    ys = jnp.take(targets, index).reshape(-1, chunk)
    nll, hit = jax.lax.map(lambda x: token_nll_hits(model.logits(x[0]), x[1]), (hs, ys))
    return nll.reshape(-1), hit.reshape(-1)


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
    nll, hit = _picked_nll(model, h.reshape(-1, d), targets, index, chunk)
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


@functools.partial(jax.jit, static_argnames=("graphdef", "chunk"))
def _label_nll(graphdef, state, ids, mask, labels, index, chunk: int):
    """[b, k] summed NLL of each of k labels after each of b prompts. ids/mask [b, p]: left-padded prompts;
    labels [k, l]: each label's target tokens, right-padded with -1; index [m]: the flat positions into
    [b * k, l - 1] whose next token is a real label token."""
    model = nnx.merge(graphdef, state)
    b, p = ids.shape
    k, l = labels.shape
    positions = jnp.maximum(jnp.cumsum(mask, -1) - 1, 0).astype(jnp.int32)
    h, cache = model.hidden_states(ids, positions=positions, attention_mask=mask,
                                   cache=model.init_cache(b, p + l - 1))
    # every label's first token follows the prompt's last position: one distribution per prompt
    logp = jax.nn.log_softmax(model.logits(h[:, -1]).astype(jnp.float32), -1)
    total = -logp[:, labels[:, 0]]
    if not index.shape[0]:  # one-token labels: nothing follows
        return total
    # the rest run as one chunk per (prompt, label) on a copy of the prompt's cache
    tokens = jnp.tile(jnp.maximum(labels, 0), (b, 1))
    pos = jnp.repeat(positions[:, -1] + 1, k)[:, None] + jnp.arange(l - 1)[None]
    h, _ = model.hidden_states(tokens[:, :-1], positions=pos, attention_mask=jnp.tile(labels[:, :-1] >= 0, (b, 1)),
                               cache=cache_rows(cache, jnp.repeat(jnp.arange(b), k)))
    m = index.shape[0]
    index, valid = jnp.pad(index, (0, -m % chunk)), jnp.arange(m + -m % chunk) < m
    nll, _ = _picked_nll(model, h.reshape(-1, h.shape[-1]), tokens[:, 1:].reshape(-1), index, chunk)
    rest = jax.ops.segment_sum(jnp.where(valid, nll, 0.0), index // (l - 1), b * k)
    return total + rest.reshape(b, k)


def length_groups(lengths: Sequence[int], most: int = 3) -> list[list[int]]:
    """Target indices split into at most `most` groups of similar length, with the fewest padded positions (a
    group runs max(length) - 1 positions per target; ties go to fewer groups): one shared width would run
    Banking77's 77 labels (3 to 16 tokens and EOS) at 1,232 positions a prompt, three widths at 563."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    sizes = [lengths[i] for i in order]
    n = len(sizes)
    # cut[g][i]: (fewest positions for sizes[i:] in at most g groups, minus the end of the first group)
    cut = [[(float("inf"), -n)] * n + [(0, -n)]]
    for g in range(1, most + 1):
        cut.append([min(((j - i) * (sizes[j - 1] - 1) + cut[g - 1][j][0], -j) for j in range(i + 1, n + 1))
                     for i in range(n)] + [(0, -n)])
    groups, i = [], 0
    while i < n:
        j = -cut[most - len(groups)][i][1]
        groups.append(order[i:j])
        i = j
    return groups


def label_nll(model: nnx.Module, prompts: Sequence[Sequence[int]], targets: Sequence[Sequence[int]],
              pad_id: int = 0, rows: int = 512, chunk: int = 64) -> np.ndarray:
    """[prompts, targets] summed NLL of every target (a label's tokens and EOS) after every prompt: the same
    figures as sequence_nll over each prompt + target pair, with each prompt run once per length group
    (length_groups) and its KV cache shared by the group's targets (a 77-label set costs the prompt three times,
    not 77). About `rows` prompt-target pairs go through the model at a time."""
    if not prompts:
        return np.zeros((0, len(targets)))
    if not targets or any(len(t) == 0 for t in targets):
        raise ValueError("every target needs at least one token")
    per_batch = max(1, min(len(prompts), rows // len(targets)))
    graphdef, state = nnx.split(model)
    out = np.zeros((len(prompts), len(targets)))
    for group in length_groups([len(t) for t in targets]):
        k, width = len(group), max(len(targets[j]) for j in group)
        labels = np.full((k, width), -1, np.int32)  # -1: padding (read as invalid, never as a token)
        for row, j in enumerate(group):
            labels[row, :len(targets[j])] = targets[j]
        follows = (labels[:, 1:] >= 0).reshape(-1)  # [k * (width - 1)]: the position predicts a real token
        index = (np.arange(per_batch)[:, None] * follows.size + np.flatnonzero(follows)[None]).reshape(-1)
        for start in range(0, len(prompts), per_batch):
            batch = list(prompts[start:start + per_batch])
            real = len(batch)
            batch += [batch[0]] * (per_batch - real)  # a full last batch reuses the compiled shape
            ids, mask = left_pad(batch, pad_id)
            nll = _label_nll(graphdef, state, jnp.asarray(ids), jnp.asarray(mask), jnp.asarray(labels),
                             jnp.asarray(index), min(chunk, index.size or 1))
            out[start:start + real, group] = np.asarray(nll, np.float64)[:real]
    return out
