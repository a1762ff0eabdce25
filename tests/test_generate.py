"""KV-cache generation: greedy equals transformers' greedy token for token on batched prompts of unequal length."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import ftjax.models as M
from ftjax.models.generate import Sampling, generate, left_pad, sample_logits

PROMPTS = [[5, 17, 33, 8, 99, 4, 61], [7, 3], [12, 40, 41, 42, 9]]


def hf_greedy(hf, prompts, n, eos):
    ids, mask = left_pad(prompts, pad_id=0, multiple=1)
    with torch.no_grad():
        out = hf.generate(input_ids=torch.tensor(ids, dtype=torch.long), attention_mask=torch.tensor(mask).long(),
                          max_new_tokens=n, do_sample=False, eos_token_id=eos, pad_token_id=0)
    new = out[:, ids.shape[1]:].tolist()
    return [row[: row.index(eos)] if eos in row else row for row in new]


@pytest.mark.parametrize("family", ["llama", "gemma3_text", *(pytest.param(f, marks=pytest.mark.long) for f in ("mistral", "qwen3", "gemma2", "gpt2"))])
def test_greedy_matches_transformers(family, hf_folder):
    hf, path = hf_folder(family)
    model = M.from_pretrained(path)
    # a frequent token as "eos" so that some rows stop early and others run on
    n = 12
    free = generate(model, PROMPTS, Sampling(max_new_tokens=n))
    eos = free[0][3]
    ours = generate(model, PROMPTS, Sampling(max_new_tokens=n, stop_token_ids=(eos,)))
    assert ours == hf_greedy(hf, PROMPTS, n, eos)
    assert [len(r) for r in free] == [n] * len(PROMPTS)


def test_top_k_one_and_tiny_top_p_are_greedy(hf_folder):
    _, path = hf_folder("qwen2")
    model = M.from_pretrained(path)
    greedy = generate(model, PROMPTS, Sampling(max_new_tokens=6))
    assert generate(model, PROMPTS, Sampling(max_new_tokens=6, temperature=1.0, top_k=1, seed=3)) == greedy
    assert generate(model, PROMPTS, Sampling(max_new_tokens=6, temperature=1.0, top_p=1e-6, seed=3)) == greedy


def test_sampling_is_seeded_and_respects_filters():
    logits = jnp.log(jnp.asarray([[0.5, 0.3, 0.15, 0.05]] * 2000))
    keys = jax.random.split(jax.random.key(0), 1)[0]
    s = Sampling(temperature=1.0, top_k=2)
    toks = np.asarray(sample_logits(logits, keys, s))
    assert set(toks) == {0, 1} and abs((toks == 0).mean() - 0.5 / 0.8) < 0.05
    toks_p = np.asarray(sample_logits(logits, keys, Sampling(temperature=1.0, top_p=0.9)))
    assert set(toks_p) == {0, 1, 2}  # 0.5 + 0.3 < 0.9, so the third token is needed; the fourth never
    np.testing.assert_array_equal(toks, np.asarray(sample_logits(logits, keys, s)))


@pytest.mark.parametrize("bad", [dict(max_new_tokens=0), dict(top_p=0.0), dict(temperature=-1.0)])
def test_bad_sampling_is_rejected(bad):
    with pytest.raises(ValueError):
        Sampling(**bad)


def test_top_k_and_top_p_keep_exactly_the_sorted_sets():
    """The bisection thresholds keep the same tokens as sorting the vocabulary would."""
    import jax
    import jax.numpy as jnp

    from ftjax.models.generate import _largest_threshold

    logits = jnp.asarray(np.random.default_rng(0).normal(size=(4, 5000)) * 4, jnp.float32)
    for k in (1, 5, 40):
        kth = _largest_threshold(logits, lambda keep: jnp.sum(keep, -1) >= k)
        want = np.sort(np.asarray(jax.lax.top_k(logits, k)[1]), -1)
        got = [np.flatnonzero(row) for row in np.asarray(logits >= kth)]
        assert all(np.array_equal(g, w) for g, w in zip(got, want))
    p = np.asarray(jax.nn.softmax(logits, -1))
    for top_p in (0.5, 0.9):
        cut = _largest_threshold(logits, lambda keep: jnp.sum(jnp.where(keep, jax.nn.softmax(logits, -1), 0.0), -1)
                                 >= top_p)
        for row, probs, c in zip(np.asarray(logits), p, np.asarray(cut)[:, 0]):
            order = np.argsort(-probs)
            n = int(np.searchsorted(np.cumsum(probs[order]), top_p) + 1)  # the smallest set reaching top_p
            assert set(np.flatnonzero(row >= c)) == set(order[:n])
