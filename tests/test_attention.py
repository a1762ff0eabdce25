"""Every attention kernel agrees with the reference: grouped queries, sliding windows, soft-capping, packing
segments, padded rows and the KV cache; a choice the model cannot use falls back (soft-capping) or is refused
(cuDNN on CPU). The TPU splash kernel runs here in the Pallas interpreter, forward and backward, and sharded
over 8 CPU devices."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from conftest import forward_logits, padded_batch
from ftjax import models as M
from ftjax.models import attention as A, scan
from ftjax.sharding import make_mesh
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
    ref_logits = forward_logits(model, ids, mask)
    prompts = [list(r[m.astype(bool)]) for r, m in zip(ids, mask)]
    ref_tokens = generate(model, prompts, Sampling(max_new_tokens=6))
    assert model.set_attention("xla") == ("xla", "as configured")
    logits = forward_logits(model, ids, mask)
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
    assert A.resolve("auto", platform="tpu", dtype=bf16, softcap=None)[0] == "splash"
    assert A.resolve("auto", platform="tpu", dtype=bf16, softcap=30.0)[0] == "splash"  # splash soft-caps too
    assert A.resolve("auto", platform="gpu", dtype=bf16, softcap=30.0)[0] == "reference"
    assert A.resolve("auto", platform="cpu", dtype=bf16, softcap=None)[0] == "reference"
    assert "Pallas interpreter on cpu" in A.resolve("splash", platform="cpu", dtype=bf16, softcap=None)[1]
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


def _packed_rows(b=2, t=128, cut=50, pad=20):
    """Two sequences a row (positions restarting at `cut`), the last row right-padded by `pad`."""
    seg = np.where(np.arange(t) < cut, 1, 2)[None].repeat(b, 0)
    pos = np.where(seg == 1, np.arange(t), np.arange(t) - cut)
    valid = np.ones((b, t), bool)
    valid[-1, t - pad:] = False
    return jnp.asarray(pos, jnp.int32), jnp.asarray(valid), jnp.asarray(seg, jnp.int32)


@pytest.mark.parametrize("window,softcap", [(None, None), (16, None), (None, 2.0)])
def test_splash_kernel_equals_reference_forward_and_backward(window, softcap):
    q, k, v = _qkv(t=128, h=16)
    pos, valid, seg = _packed_rows()
    dense = attention_mask(pos, pos, valid, window, seg, seg)
    (segments,) = [m for w, m in A.segments(valid, seg, (window,)).items()]
    np.testing.assert_array_equal(np.asarray(segments.dense())[np.asarray(valid)], np.asarray(dense)[np.asarray(valid)])
    rows = jnp.asarray(valid, jnp.float32)[:, :, None, None]  # padded queries' outputs are used by no one

    def loss(impl, mask):
        return lambda q, k, v: jnp.sum(jnp.sin(A.attend(q, k, v, mask, scale=0.3, softcap=softcap,
                                                        implementation=impl)) * rows)

    want, want_grads = jax.jit(jax.value_and_grad(loss("reference", dense), argnums=(0, 1, 2)))(q, k, v)
    got, grads = jax.jit(jax.value_and_grad(loss("splash", segments), argnums=(0, 1, 2)))(q, k, v)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    for g, w in zip(grads, want_grads):
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), atol=2e-5)


def test_splash_falls_back_to_xla_where_the_kernel_cannot_run():
    q, k, v = _qkv(t=11)  # not a multiple of 128: the equivalent dense mask on XLA's op
    pos, valid, seg = _packed_rows(t=11, cut=6, pad=3)
    (segments,) = A.segments(valid, seg, (4,)).values()
    ref = A.reference(q, k, v, attention_mask(pos, pos, valid, 4, seg, seg), scale=0.3, softcap=None)
    out = A.attend(q, k, v, segments, scale=0.3, softcap=None, implementation="splash")
    np.testing.assert_allclose(np.asarray(out)[np.asarray(valid)], np.asarray(ref)[np.asarray(valid)], atol=2e-5)


def test_splash_under_a_mesh_equals_one_device():
    q, k, v = _qkv(b=4, t=128, h=16)  # 4 rows over data x fsdp = 2 x 2, heads over tensor = 2
    pos, valid, seg = _packed_rows(b=4)
    mesh = make_mesh((2, 2, 2))
    one, = A.segments(valid, seg, (None,)).values()
    sharded, = A.segments(valid, seg, (None,), mesh).values()
    f = lambda mask: jax.jit(lambda q, k, v: A.attend(q, k, v, mask, scale=0.3, softcap=None,
                                                      implementation="splash"))(q, k, v)
    np.testing.assert_allclose(np.asarray(f(sharded)), np.asarray(f(one)), atol=1e-6)


@pytest.mark.parametrize("stacked", [False, True])
def test_model_on_splash_equals_reference_with_windows_packing_and_cache(hf_folder, stacked):
    _, path = hf_folder("gemma3_text")  # sliding-window and full layers: the scanned kernel switches per layer
    model = M.from_pretrained(path)
    if stacked:
        scan.stack_blocks(model)
    pos, valid, seg = _packed_rows(b=2, t=128, cut=40, pad=30)
    ids = jnp.asarray(np.random.default_rng(0).integers(3, 131, (2, 128)), jnp.int32)
    prompts = [[5, 9, 23, 7], [11, 4]]

    # one compiled program (not op by op); the kernel is a static attribute, so a new one is traced anew
    hidden = nnx.jit(lambda m: m.hidden_states(ids, positions=pos, attention_mask=valid, segment_ids=seg)[0])

    def run():
        return np.asarray(hidden(model))[np.asarray(valid)], generate(model, prompts, Sampling(max_new_tokens=4))

    want, want_tokens = run()
    assert model.set_attention("splash")[0] == "splash"
    got, tokens = run()
    np.testing.assert_allclose(got, want, atol=1e-4)
    assert tokens == want_tokens  # decoding with the cache takes the dense mask on XLA's op


@pytest.mark.long
def test_sharded_scanned_run_on_splash_trains_like_the_reference(tiny_model_dir, tmp_path, monkeypatch):
    from conftest import sft_config, write_rows
    from ftjax.train import loop
    from ftjax.workdir import read_metrics

    rng = np.random.RandomState(0)
    rows = [{"prompt": f"w3 w{a} w{a % 5 + 2}", "completion": f" w{a % 7 + 1} w5"} for a in rng.randint(10, 100, 80)]
    common = {"model.path": str(tiny_model_dir), "data.train": write_rows(tmp_path / "train.jsonl", rows),
              "data.validation": "", "data.pack": True, "data.max_length": 128, "train.steps": 3,
              "train.batch_size": 4, "train.eval_every": 10, "mesh.shape": (2, 2, 2), "mesh.rules": "fsdp_tensor",
              "model.scan_layers": True}
    loop.main(sft_config(**common), tmp_path / "reference")
    calls = []
    kernel = A._splash
    monkeypatch.setattr(A, "_splash", lambda *a, **k: calls.append(a[3].mesh) or kernel(*a, **k))
    loop.main(sft_config(**common, **{"model.attention": "splash"}), tmp_path / "splash")
    assert calls and all(mesh is not None and mesh.size == 8 for mesh in calls)  # the kernel ran, under the mesh
    losses = lambda w: [m["loss"] for m in read_metrics(w) if "loss" in m]
    np.testing.assert_allclose(losses(tmp_path / "splash"), losses(tmp_path / "reference"), rtol=2e-5)
