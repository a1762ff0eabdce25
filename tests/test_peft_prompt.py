"""Prompt and prefix tuning give the logits their definition implies: initialised from a text, the adapted model
on x equals the base model on (text + x), read at x's positions; prefix tuning also under KV-cache decoding."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import ftjax.models as M
from conftest import padded_batch, save_tiny_tokenizer
from ftjax.peft import apply_peft, use_adapter
from test_peft import logits

TEXT, TEXT_IDS = "w0 w1 w9", [8, 9, 17]  # in conftest's tiny word-level tokenizer


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tokenizer")
    save_tiny_tokenizer(path)
    return str(path)


def _with_text_in_front(n: int):
    """The padded batch with the init text (repeated to n tokens) before each row, as real tokens."""
    ids, mask, _ = padded_batch()
    text = np.array((TEXT_IDS * n)[:n], np.int32)
    b = ids.shape[0]
    return np.concatenate([np.tile(text, (b, 1)), ids], 1), np.concatenate([np.ones((b, n), np.int32), mask], 1)


# prompt: Gemma scales embeddings, GPT-2 adds learned positions; prefix: families without sliding windows
# (prefix slots stay visible to every query, where a real text would slide out of the window)
@pytest.mark.parametrize("method,family", [("prompt", "gemma"), ("prompt", "gpt2"), ("prefix", "qwen3"),
                                           ("prefix", "gpt2")])
def test_virtual_tokens_equal_a_real_prefix(method, family, hf_folder, tokenizer_dir):
    model = M.from_pretrained(hf_folder(family)[1])
    n = 4
    apply_peft(model, {"method": method, "num_virtual_tokens": n, "init_text": TEXT,
                       "tokenizer": tokenizer_dir})
    ours = logits(model)
    with use_adapter(model, None):
        ref = logits(model, *_with_text_in_front(n))[:, n:]
    valid = padded_batch()[1].astype(bool)
    assert ours.shape == ref.shape and np.abs(ours[valid] - ref[valid]).max() <= 1e-4


def test_prefix_tuning_decodes_with_a_cache(hf_folder):
    model = M.from_pretrained(hf_folder("llama")[1])
    apply_peft(model, {"method": "prefix", "num_virtual_tokens": 3})
    ids, mask, positions = (jnp.asarray(a) for a in padded_batch())
    full = logits(model, ids, mask)

    @nnx.jit
    def prefill_then_step(model, ids, mask, positions):
        cache = model.init_cache(ids.shape[0], ids.shape[1])
        _, cache = model.hidden_states(ids[:, :-1], positions=positions[:, :-1], attention_mask=mask[:, :-1],
                                       cache=cache)
        h, _ = model.hidden_states(ids[:, -1:], positions=positions[:, -1:], attention_mask=mask[:, -1:],
                                   cache=cache)
        return model.logits(h)[:, 0]

    np.testing.assert_allclose(np.asarray(prefill_then_step(model, ids, mask, positions)), full[:, -1], atol=1e-4)


def test_prompt_tuning_limits_are_clear_errors_and_segment_ids_pass(hf_folder):
    model = M.from_pretrained(hf_folder("llama")[1])
    apply_peft(model, {"method": "prompt", "num_virtual_tokens": 2})
    ids, mask, positions = (jnp.asarray(a) for a in padded_batch())
    with pytest.raises(ValueError, match="prompt tuning does not support KV-cache decoding"):
        model.hidden_states(ids, positions=positions, attention_mask=mask, cache=model.init_cache(3, 16))
    # training batches carry segment ids (1 on an unpacked row's tokens, 0 on padding): the same logits as without
    # at every real token
    real = np.asarray(mask).astype(bool)
    forward = nnx.jit(lambda m, segment_ids: m(ids, attention_mask=mask, segment_ids=segment_ids))
    with_ids = np.asarray(forward(model, mask.astype(jnp.int32)))
    np.testing.assert_allclose(with_ids[real], np.asarray(forward(model, None))[real], atol=1e-5)
    with pytest.raises(ValueError, match="peft.init_text needs peft.tokenizer"):
        apply_peft(model, {"method": "prefix", "name": "p", "init_text": "hi"})
