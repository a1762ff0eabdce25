"""The target-only loss: the chunked head (checkpointed) and the fused head gradient equal a plain full-logits
cross-entropy in value and in gradient, with label smoothing, soft-capped logits and padded target slots; the
trainer uses the fused form exactly when the head's weights are frozen."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ftjax.models as M
from ftjax.loss import target_loss_sums, target_positions, token_nll


@pytest.mark.parametrize("family", ["llama3_tied", "gemma2"])  # tied head; Gemma 2's final soft-cap
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_chunked_and_fused_equal_the_plain_loss_and_gradient(hf_folder, family, smoothing):
    _, path = hf_folder(family)
    model = M.from_pretrained(path)
    rng = np.random.default_rng(0)
    b, t, d = 3, 7, model.config.hidden_size
    hidden = jnp.asarray(rng.standard_normal((b, t, d)), jnp.float32)
    targets = jnp.asarray(rng.integers(0, model.config.vocab_size, (b, t)), jnp.int32)
    mask = rng.random((b, t)) < 0.6
    index, valid = target_positions(mask, minimum=8)  # padded slots beyond the 12-odd targets

    def plain(h):
        nll = token_nll(model.logits(h), targets, smoothing)
        return jnp.sum(nll * mask)

    def ours(fused):
        return lambda h: target_loss_sums(model.logits, h, targets, jnp.asarray(index), jnp.asarray(valid),
                                          chunk=4, smoothing=smoothing, fused=fused)[0]

    want, want_grad = jax.jit(jax.value_and_grad(plain))(hidden)
    for fused in (False, True):
        got, got_grad = jax.jit(jax.value_and_grad(ours(fused)))(hidden)
        np.testing.assert_allclose(float(got), float(want), rtol=1e-5)
        np.testing.assert_allclose(np.asarray(got_grad), np.asarray(want_grad), atol=1e-5)
    _, n, hits = jax.jit(lambda h: target_loss_sums(model.logits, h, targets, jnp.asarray(index), jnp.asarray(valid),
                                                    chunk=4, fused=True))(hidden)
    predicted = np.argmax(np.asarray(jax.jit(model.logits)(hidden)), -1)
    assert int(n) == mask.sum() and int(hits) == int(np.sum((predicted == np.asarray(targets)) & mask))


def test_fused_head_only_when_the_head_is_frozen(hf_folder):
    from flax import nnx

    from ftjax.peft.apply import apply_peft, trainable_filter
    from ftjax.train.step import lm_head_trains

    cases = [("llama3_tied", {"method": "lora"}, False), ("llama3_tied", {"method": "lora", "unfreeze": "embed"}, True),
             ("llama3_tied", {"method": "full"}, True), ("llama", {"method": "lora"}, False),
             ("llama", {"method": "lora", "targets": "lm_head,q_proj"}, True)]  # LoRA on the head itself
    for family, peft, trains in cases:
        model = apply_peft(M.from_pretrained(hf_folder(family)[1]), peft, nnx.Rngs(0))
        assert lm_head_trains(model, nnx.state(model, trainable_filter(peft))) is trains, (family, peft)
