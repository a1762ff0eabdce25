"""Every attention kernel agrees with the reference: grouped queries, sliding windows, packing segments, padded
rows and the KV cache; a choice the model cannot use falls back (soft-capping) or is refused (cuDNN on CPU)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import padded_batch
from ftjax import models as M
from ftjax.models import attention as A
from ftjax.models.generate import Sampling, generate
from ftjax.models.layers import attention_mask


def _qkv(b=2, t=11, n=4, k=2, h=12, seed=0):
    r = np.random.default_rng(seed)
    q, kk, v = (jnp.asarray(r.standard_normal((b, t, heads, h)), jnp.float32) for heads in (n, k, k))
    return q, kk, v


@pytest.mark.parametrize("window", [None, 4])
@pytest.mark.parametrize("packed", [False, True])
def test_xla_kernel_equals_reference(window, packed):
    q, k, v = _qkv()
    pos = np.tile(np.arange(11), (2, 1))
    seg = None
    if packed:  # two sequences in each row, positions restarting at the second
        seg = np.where(np.arange(11) < 6, 1, 2)[None].repeat(2, 0)
        pos = np.where(seg == 1, np.arange(11), np.arange(11) - 6)
    valid = np.ones((2, 11), bool)
    valid[1, :3] = False  # a left-padded row
    pos, valid = jnp.asarray(pos), jnp.asarray(valid)
    segs = (jnp.asarray(seg), jnp.asarray(seg)) if packed else (None, None)
    mask = attention_mask(pos, pos, valid, window, *segs)
    ref = A.reference(q, k, v, mask, scale=0.3, softcap=None)
    out = A.attend(q, k, v, mask, scale=0.3, softcap=None, implementation="xla")
    rows = np.asarray(valid)  # a padded query attends to nothing: its output is not used by anyone
    np.testing.assert_allclose(np.asarray(out)[rows], np.asarray(ref)[rows], atol=2e-5)


@pytest.mark.parametrize("family", ["mistral", *(pytest.param(f, marks=pytest.mark.long) for f in ("llama", "gemma3_text", "gpt2"))])
def test_model_logits_and_cached_generation_agree_across_kernels(family, hf_folder):
    _, path = hf_folder(family)
    model = M.from_pretrained(path)
    ids, mask, _ = padded_batch()
    ref_logits = np.asarray(model(jnp.asarray(ids), attention_mask=jnp.asarray(mask)))
    prompts = [list(r[m.astype(bool)]) for r, m in zip(ids, mask)]
    ref_tokens = generate(model, prompts, Sampling(max_new_tokens=6))
    assert model.set_attention("xla") == ("xla", "as configured")
    logits = np.asarray(model(jnp.asarray(ids), attention_mask=jnp.asarray(mask)))
    real = mask.astype(bool)
    np.testing.assert_allclose(logits[real], ref_logits[real], atol=1e-4)
    assert generate(model, prompts, Sampling(max_new_tokens=6)) == ref_tokens


def test_soft_capped_model_falls_back_to_the_reference(hf_folder):
    _, path = hf_folder("gemma2")  # attn_logit_softcapping=5
    model = M.from_pretrained(path)
    impl, why = model.set_attention("xla")
    assert impl == "reference" and "soft-capped" in why
    assert {layer.implementation for layer in model.attention_layers()} == {"reference"}


def test_kernel_choice_per_platform():
    bf16 = jnp.bfloat16
    assert A.resolve("auto", platform="gpu", dtype=bf16, softcap=None)[0] == "cudnn"
    assert A.resolve("auto", platform="gpu", dtype=jnp.float32, softcap=None)[0] == "xla"
    assert A.resolve("auto", platform="tpu", dtype=bf16, softcap=None)[0] == "xla"
    assert A.resolve("auto", platform="cpu", dtype=bf16, softcap=None)[0] == "reference"
    assert A.resolve("cudnn", platform="gpu", dtype=jnp.float32, softcap=None)[0] == "reference"
    with pytest.raises(ValueError, match="needs a GPU"):
        A.resolve("cudnn", platform="cpu", dtype=bf16, softcap=None)
    with pytest.raises(ValueError, match="choose one of"):
        A.resolve("flash", platform="cpu", dtype=bf16, softcap=None)


def test_bad_remat_policy_and_attention_are_one_line_errors(tiny_model_dir):
    from conftest import sft_config
    from ftjax.models.config import check

    with pytest.raises(ValueError, match=r"model.remat='some': choose from none, full, dots, offload"):
        check(sft_config(**{"model.path": str(tiny_model_dir), "model.remat": "some"}).model)
    with pytest.raises(ValueError, match=r"model.attention='flash'"):
        check(sft_config(**{"model.path": str(tiny_model_dir), "model.attention": "flash"}).model)
    if jax.devices()[0].platform == "cpu":
        with pytest.raises(ValueError, match="needs a GPU or TPU"):
            M.from_pretrained(tiny_model_dir).set_remat("offload")
