"""LoRA/DoRA/(IA)3 in ftjax: targets, config errors, training only the adapter, merge, named adapters, save/load."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import ftjax.models as M
from conftest import forward_logits, padded_batch
from test_models import hf_logits
from ftjax.peft import (apply_peft, find_targets, load_adapter, merge, save_adapter, set_adapter, trainable_filter,
                        unmerge, use_adapter)
from ftjax.peft.config import peft_config
from ftjax.peft.layer import AdaptedLinear


def logits(model, ids=None, mask=None) -> np.ndarray:
    if ids is None:
        ids, mask, _ = padded_batch()
    return forward_logits(model, ids, mask)


def randomize(model: nnx.Module, name: str = "default", seed: int = 0, scale: float = 0.2, unfreeze: str = "") -> None:
    """Random non-zero adapter weights (magnitudes and (IA)3 vectors around their neutral value), and base
    weights matching `unfreeze` perturbed."""
    rng = np.random.RandomState(seed)
    state = nnx.state(model, trainable_filter({"name": name, "unfreeze": unfreeze}))
    flat = []
    for path, var in nnx.to_flat_state(state):
        v = np.asarray(var[...], np.float32)
        noise = rng.randn(*v.shape).astype(np.float32) * scale
        new = v * (1 + noise) if path[-1] in ("magnitude", "ia3_l") else v + noise
        flat.append((path, var.replace(jnp.asarray(new, var.dtype))))
    nnx.update(model, nnx.from_flat_state(flat))


def max_diff(a: np.ndarray, b: np.ndarray) -> float:
    valid = padded_batch()[1].astype(bool)
    return float(np.abs(a[valid] - b[valid]).max())


@pytest.fixture
def llama(hf_folder):
    return M.from_pretrained(hf_folder("llama")[1])


def test_target_patterns(llama):
    assert find_targets(llama, "q_proj") == [f"model.layers.{i}.self_attn.q_proj" for i in range(3)]
    everything = find_targets(llama, "all-linear")
    assert len(everything) == 21 and "lm_head" not in everything
    assert find_targets(llama, r"re:model\.layers\.1\..*_proj") == [p for p in everything if ".1." in p]
    assert sorted(find_targets(llama, "mlp.down_proj, lm_head"))[0] == "lm_head"
    with pytest.raises(ValueError, match="pattern 'qq_proj' matches no linear layer"):
        find_targets(llama, "q_proj,qq_proj")


def test_config_errors():
    with pytest.raises(ValueError, match="peft.method='adapterx': choose from lora, dora"):
        peft_config({"method": "adapterx"})
    with pytest.raises(ValueError, match="unknown peft key 'rnak'"):
        peft_config({"rnak": 4})
    with pytest.raises(ValueError, match="peft.dropout"):
        peft_config({"dropout": 1.5})


def _x(d: int = 40, seed: int = 0) -> jnp.ndarray:
    return jnp.asarray(np.random.RandomState(seed).randn(2, 5, d), jnp.float32)


def test_adapters_start_as_identity_and_inits(llama):
    targets = "layers.0.self_attn.q_proj,layers.2.mlp.down_proj"
    apply_peft(llama, {"method": "dora", "rank": 4, "rslora": True, "alpha": 8, "targets": targets})
    apply_peft(llama, {"method": "lora", "name": "pissa", "init": "pissa", "rank": 4, "targets": targets})
    apply_peft(llama, {"method": "ia3", "name": "ia3", "targets": targets, "feedforward": "down_proj"})
    q = llama.model.layers[0].self_attn.q_proj
    assert isinstance(q, AdaptedLinear) and sorted(q.adapters) == ["default", "ia3", "pissa"]
    for name in ("default", "pissa", "ia3"):
        set_adapter(llama, name)
        for layer in (q, llama.model.layers[2].mlp.down_proj):
            x = _x(layer.kernel.shape[0])
            np.testing.assert_allclose(layer(x), layer.base_call(x), atol=1e-5)
    lora = q.adapters["default"]
    assert lora.scale == pytest.approx(8 / 2)
    assert np.abs(np.asarray(lora.lora_a[...])).max() <= 1 / np.sqrt(40) and not np.asarray(lora.lora_b[...]).any()
    assert lora.lora_a.get_metadata()["out_sharding"] == ("embed", None)
    assert lora.lora_b.get_metadata()["out_sharding"] == (None, "heads")
    p = q.adapters["pissa"]
    u, sv, vh = np.linalg.svd(np.asarray(q.kernel[...]))
    principal = (u[:, :4] * sv[:4]) @ vh[:4]
    np.testing.assert_allclose(p.scale * np.asarray(p.lora_a[...] @ p.lora_b[...]), principal, atol=1e-4)


def _loss(model, ids, mask):
    out = model(ids, attention_mask=mask)
    return jnp.mean(jax.nn.log_softmax(out)[..., 0] * mask)


def test_training_step_changes_only_adapter(hf_folder):
    dtype = jnp.bfloat16  # the frozen base in bfloat16, the adapter in float32
    model = M.from_pretrained(hf_folder("llama")[1], dtype=dtype)
    cfg = peft_config({"method": "lora", "rank": 4, "unfreeze": "post_attention_layernorm"})
    apply_peft(model, cfg)
    randomize(model)
    trainable = trainable_filter(cfg)
    optimizer = nnx.Optimizer(model, optax.adam(1e-2), wrt=trainable)
    before = {p: np.asarray(v[...], np.float32) for p, v in nnx.to_flat_state(nnx.state(model, nnx.Param))}
    ids, mask, _ = padded_batch()

    @nnx.jit
    def step(model, optimizer, ids, mask):
        grads = nnx.grad(_loss, argnums=nnx.DiffState(0, trainable))(model, ids, mask)
        optimizer.update(model, grads)

    step(model, optimizer, jnp.asarray(ids), jnp.asarray(mask))
    after = nnx.to_flat_state(nnx.state(model, nnx.Param))
    changed = {".".join(map(str, p)) for p, v in after if not np.array_equal(np.asarray(v[...], np.float32), before[p])}
    assert changed and all(".adapters.default.lora_" in k or "post_attention_layernorm" in k for k in changed)
    assert any("post_attention_layernorm" in k for k in changed) and any("lora_a" in k for k in changed)
    assert model.model.layers[0].self_attn.q_proj.kernel.dtype == dtype
    assert model.model.layers[0].self_attn.q_proj.adapters["default"].lora_a.dtype == jnp.float32
    n_trainable = len(nnx.to_flat_state(nnx.state(model, trainable)))
    mu = [x for x in jax.tree.leaves(optimizer.opt_state) if getattr(x, "ndim", 0) > 0]
    assert len(mu) == 2 * n_trainable  # adam's two moments, for trainable weights only


def test_full_fine_tuning_filter_and_freeze(llama):
    f = trainable_filter({"method": "full", "freeze": "embed_tokens"})
    paths = {".".join(map(str, p)) for p, _ in nnx.to_flat_state(nnx.state(llama, f))}
    assert "lm_head.kernel" in paths and not any("embed_tokens" in p for p in paths)
    assert len(paths) == len(nnx.to_flat_state(nnx.state(llama, nnx.Param))) - 1


def test_merge_unmerge(hf_folder):
    model = M.from_pretrained(hf_folder("llama3_tied")[1])  # biases everywhere: merged biases matter too
    for method in ("lora", "dora", "ia3"):
        apply_peft(model, {"method": method, "name": method, "rank": 4})
        randomize(model, method)
    layers = [model.model.layers[1].mlp.down_proj, model.model.layers[0].self_attn.k_proj]
    kernels = [np.asarray(layer.kernel[...]) for layer in layers]
    for method in ("lora", "dora", "ia3"):
        set_adapter(model, method)
        outputs = [layer(_x(layer.kernel.shape[0])) for layer in layers]
        merge(model)
        assert all(layer.merged == method for layer in layers)
        for layer, out, kernel in zip(layers, outputs, kernels):
            np.testing.assert_allclose(layer(_x(layer.kernel.shape[0])), out, atol=1e-5)
            assert np.abs(np.asarray(layer.kernel[...]) - kernel).max() > 1e-3
        with pytest.raises(ValueError, match="unmerge it before switching"):
            set_adapter(model, None)
        unmerge(model)
        for layer, out, kernel in zip(layers, outputs, kernels):
            np.testing.assert_allclose(np.asarray(layer.kernel[...]), kernel, atol=1e-5)
            np.testing.assert_allclose(layer(_x(layer.kernel.shape[0])), out, atol=1e-5)


def test_named_adapters_switch_without_reloading(hf_folder):
    hf, path = hf_folder("llama")
    llama = M.from_pretrained(path)
    base = hf_logits(hf, *padded_batch())
    apply_peft(llama, {"method": "lora", "name": "a", "targets": "q_proj,v_proj"})
    randomize(llama, "a", seed=1)
    apply_peft(llama, {"method": "ia3", "name": "b"})
    randomize(llama, "b", seed=2)
    out_b = logits(llama)
    set_adapter(llama, "a")
    out_a = logits(llama)
    assert max_diff(out_a, base) > 1e-3 and max_diff(out_b, base) > 1e-3 and max_diff(out_a, out_b) > 1e-3
    with use_adapter(llama, None):
        assert max_diff(logits(llama), base) < 1e-6
    with use_adapter(llama, "b"):
        assert max_diff(logits(llama), out_b) < 1e-6
    assert max_diff(logits(llama), out_a) < 1e-6
    with pytest.raises(ValueError, match="no adapter named 'c'"):
        set_adapter(llama, "c")
    with pytest.raises(ValueError, match="already has an adapter named 'a'"):
        apply_peft(llama, {"name": "a"})


def test_adapter_save_load_round_trip(hf_folder, tmp_path):
    model = M.from_pretrained(hf_folder("qwen2")[1])
    apply_peft(model, {"method": "lora", "init": "pissa", "rank": 3, "targets": "re:.*\\.[02]\\..*proj",
                       "unfreeze": "layers.1.post_attention"})
    randomize(model, unfreeze="layers.1.post_attention")
    expected = logits(model)
    out = save_adapter(model, tmp_path / "adapter")
    assert sorted(p.name for p in out.iterdir()) == ["adapter.json", "adapter.safetensors"]
    fresh = M.from_pretrained(hf_folder("qwen2")[1])
    assert load_adapter(fresh, out, name="mine") == "mine"
    assert max_diff(logits(fresh), expected) < 1e-6
    other = M.from_pretrained(hf_folder("llama")[1])
    with pytest.raises(ValueError, match="belongs to a qwen2 model with model_type=qwen2, but this model is llama"):
        load_adapter(other, out)


def test_adapter_shape_mismatch_is_named(hf_folder, tmp_path):
    import json

    model = M.from_pretrained(hf_folder("llama")[1])
    apply_peft(model, {"method": "lora", "targets": "q_proj"})
    out = save_adapter(model, tmp_path / "adapter")
    meta = json.loads((out / "adapter.json").read_text())
    meta["adapter"]["rank"] = 5
    (out / "adapter.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"lora_a has shape \(40, 8\), the model expects \(40, 5\)"):
        load_adapter(M.from_pretrained(hf_folder("llama")[1]), out)


def test_dropout_only_in_training(llama):
    apply_peft(llama, {"method": "lora", "dropout": 0.5, "targets": "model.layers.0.self_attn.q_proj"})
    randomize(llama)
    q = llama.model.layers[0].self_attn.q_proj
    x = _x()
    assert np.abs(np.asarray(q(x) - q(x))).max() > 1e-4
    lora = q.adapters["default"]
    expected = q.base_call(x) + x @ lora.lora_a[...] @ lora.lora_b[...] * lora.scale
    np.testing.assert_allclose(nnx.view(q, deterministic=True)(x), expected, atol=1e-5)
