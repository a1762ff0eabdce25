"""QLoRA's quantised base: int8 and NF4 round trips within their stated error, dequantised matmuls and LoRA
gradients match the float base within tolerance, and a quantised run trains, shards and evaluates."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import ftjax.models as M
from conftest import FAMILIES, padded_batch
from ftjax.models import quantize as Q
from ftjax.peft.apply import apply_peft, trainable_filter


@pytest.mark.parametrize("kind", ["int8", "nf4"])
def test_round_trip_error_is_bounded(kind):
    w = jnp.asarray(np.random.default_rng(0).standard_normal((128, 24)), jnp.float32)
    q = Q.quantize(w, kind)
    back = np.asarray(q[...])
    if kind == "int8":  # at most half a step of each column's absmax / 127
        step = np.abs(np.asarray(w)).max(0) / 127
        assert np.all(np.abs(back - np.asarray(w)) <= 0.5 * step + 1e-6)
        assert q.codes.dtype == jnp.int8 and q.nbytes < w.nbytes / 3.5
    else:  # each value goes to the nearest NF4 level of its block's scale
        blocks = np.asarray(w).reshape(2, 64, 24)
        scale = np.abs(blocks).max(1, keepdims=True)
        levels = Q.NF4[None, None, None] * scale[..., None]
        nearest = np.take_along_axis(levels.squeeze(1)[:, None], np.abs(blocks[..., None] - levels).argmin(-1)[
            ..., None], -1)[..., 0]
        np.testing.assert_allclose(back.reshape(2, 64, 24), nearest, atol=1e-6)
        assert q.codes.shape == (64, 24) and q.nbytes < w.nbytes / 7
    with pytest.raises(ValueError, match="quantised"):
        q[...] = 0


def test_nf4_needs_whole_blocks_and_bad_kinds_are_named():
    with pytest.raises(ValueError, match="divisible by 64"):
        Q.quantize(jnp.ones((40, 8)), "nf4")
    with pytest.raises(ValueError, match="model.quantize='int4'"):
        Q.quantize_base(None, "int4")


def _lora(model):
    apply_peft(model, {"method": "lora", "rank": 4, "init": "gaussian"}, nnx.Rngs(0))
    return model


@pytest.mark.parametrize("kind, tol", [("int8", 0.02), pytest.param("nf4", 0.25, marks=pytest.mark.long)])
def test_quantized_model_and_lora_gradients_track_the_float_model(tmp_path, kind, tol):
    import transformers

    config = transformers.LlamaConfig(**dict(FAMILIES["llama"][1], hidden_size=64, intermediate_size=128,
                                           head_dim=16))
    folder = tmp_path / "llama64"
    transformers.AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    ids, mask, _ = padded_batch()
    ref, quant = _lora(M.from_pretrained(folder)), _lora(Q.quantize_base(M.from_pretrained(folder), kind))
    n_kernels = sum(isinstance(v.get_value(), Q.QTensor) for _, v in nnx.to_flat_state(nnx.state(quant, nnx.Param)))
    assert n_kernels == 7 * config.num_hidden_layers  # q k v o gate up down; not the embedding or head
    assert Q.base_nbytes(quant) < 0.6 * Q.base_nbytes(ref)

    def loss_and_grads(model):
        graphdef, lora, rest = nnx.split(model, trainable_filter({"method": "lora"}), ...)

        def loss(lora):
            logits = nnx.merge(graphdef, lora, rest)(jnp.asarray(ids), attention_mask=jnp.asarray(mask))
            return optax.softmax_cross_entropy_with_integer_labels(logits[:, :-1], jnp.asarray(ids)[:, 1:]).mean()

        return jax.jit(jax.value_and_grad(loss))(lora)

    (l_ref, g_ref), (l_q, g_q) = loss_and_grads(ref), loss_and_grads(quant)
    assert abs(float(l_q) - float(l_ref)) < tol * abs(float(l_ref))
    flat_ref, flat_q = ([np.asarray(g, np.float64).ravel() for g in jax.tree.leaves(t)] for t in (g_ref, g_q))
    cos = [float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))
           for a, b in zip(flat_ref, flat_q) if np.linalg.norm(a) > 0]
    assert min(cos) > 1 - tol and len(cos) >= 7


@pytest.mark.long
def test_quantized_training_run_shards_trains_and_evaluates(tiny_model_dir, tmp_path):
    from conftest import ROOT, run_ftjax, write_rows

    rows = [{"prompt": f"w3 w{10 + i % 20}", "completion": f" w{(10 + i % 20) % 7 + 1} w5"} for i in range(32)]
    train = write_rows(tmp_path / "train.jsonl", rows)
    out = tmp_path / "run"
    run_ftjax("train", f"--config={ROOT / 'configs' / 'sft.py'}:tiny", f"--workdir={out}",
              f"--config.model.path={tiny_model_dir}", f"--config.data.train={train}",
              f"--config.data.validation={train}", "--config.model.quantize=int8", "--config.train.steps=6",
              "--config.mesh.shape=(2,2,2)", "--config.mesh.rules=fsdp_tensor", "--config.train.batch_size=8")
    import json

    from ftjax.workdir import read_metrics

    losses = [m["loss"] for m in read_metrics(out) if "loss" in m]
    assert len(losses) == 6 and np.all(np.isfinite(losses))
    assert json.loads((out / "config.json").read_text())["model"]["quantize"] == "int8"
    run_ftjax("eval", f"--workdir={out}", f"--config.data.test={train}")
    report = json.loads((out / "eval" / "test.json").read_text())
    assert np.isfinite(report["metrics"]["perplexity"]["value"])
