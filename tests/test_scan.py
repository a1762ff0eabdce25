"""Scanned layers (model.scan_layers): stacked blocks under lax.scan compute what the unrolled loop computes
(logits, cached generation, gradients with and without remat), a scanned run trains and restores like an
unrolled one on a sharded mesh, and what cannot be stacked is refused in one line."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import ftjax.models as M
from conftest import padded_batch, sft_config
from ftjax.models import scan
from ftjax.models.beam import Beam, beam_search
from ftjax.models.generate import Sampling, generate
from ftjax.models.quantize import quantize_base
from ftjax.peft.apply import apply_peft, trainable_filter
from ftjax.train.state import TrainState
from ftjax.train.step import make_train_step


def _adapted(path, peft, quantize="none"):
    model = M.from_pretrained(path)
    quantize_base(model, quantize)
    return apply_peft(model, peft, nnx.Rngs(0))


@pytest.mark.parametrize("family,peft,quantize", [
    pytest.param("gemma3_text", {"method": "dora", "rank": 4, "init": "gaussian"}, "none",  # local/global rope
                 marks=pytest.mark.long),
    pytest.param("gpt2", {"method": "ia3"}, "none", marks=pytest.mark.long),
    pytest.param("mistral", {"method": "prefix", "num_virtual_tokens": 3}, "none", marks=pytest.mark.long),
    pytest.param("llama", {"method": "lora", "rank": 4, "init": "gaussian"}, "int8", marks=pytest.mark.long),  # LoRA, quantised base
])
def test_stacked_blocks_compute_what_the_loop_computes(hf_folder, family, peft, quantize):
    _, path = hf_folder(family)
    model = _adapted(path, peft, quantize)
    ids, mask, _ = padded_batch()
    prompts = [[5, 9, 23, 7], [11, 4], [8, 8, 30]]
    loop_logits = np.asarray(model(jnp.asarray(ids), attention_mask=jnp.asarray(mask)))
    loop_tokens = generate(model, prompts, Sampling(max_new_tokens=6))
    before = nnx.to_flat_state(nnx.state(model))

    scan.stack_blocks(model)
    assert scan.is_stacked(model) and len(getattr(model.backbone, model.layout.blocks)) == model.config.num_layers
    kernel = next(v for p, v in nnx.to_flat_state(nnx.state(model, nnx.Param)) if "kernel" in map(str, p)
                  and str(p[0]) == model.layout.backbone)
    assert kernel.get_metadata()["out_sharding"][0] == "layers"
    np.testing.assert_allclose(np.asarray(model(jnp.asarray(ids), attention_mask=jnp.asarray(mask))), loop_logits,
                               atol=2e-5)
    if peft["method"] != "prefix":  # prefix tuning's cache holds the virtual tokens' keys in front
        assert generate(model, prompts, Sampling(max_new_tokens=6)) == loop_tokens

    scan.unstack_blocks(model)  # back to the unrolled layout, bit for bit
    after = nnx.to_flat_state(nnx.state(model))
    assert [p for p, _ in after] == [p for p, _ in before]
    for (_, a), (_, b) in zip(after, before):
        assert jax.tree.all(jax.tree.map(lambda x, y: bool(jnp.array_equal(x, y)), a.get_value(), b.get_value()))


@pytest.mark.long
def test_stacked_beam_search_reorders_the_stacked_cache(hf_folder):
    _, path = hf_folder("llama")
    model = _adapted(path, {"method": "lora", "rank": 4, "init": "gaussian"})
    prompts = [[5, 9, 23, 7], [11, 4]]
    want = beam_search(model, prompts, Beam(num_beams=3, max_new_tokens=5))
    scan.stack_blocks(model)
    assert beam_search(model, prompts, Beam(num_beams=3, max_new_tokens=5)) == want


@pytest.mark.parametrize("remat", ["dots"])  # without remat: the sharded run below has equal losses step by step
@pytest.mark.long
def test_scanned_gradients_equal_unrolled(hf_folder, remat):
    _, path = hf_folder("gemma3_text")
    ids, mask, positions = padded_batch()
    targets = np.roll(ids, -1, 1)
    loss_mask = mask.copy()
    loss_mask[:, -1] = 0
    from ftjax.loss import target_positions

    batch = {"inputs": ids, "targets": targets, "positions": positions, "attention_mask": mask,
             "segment_ids": mask}
    batch = {k: jnp.asarray(v)[None] for k, v in batch.items()}
    batch["index"], batch["valid"] = target_positions(jnp.asarray(loss_mask)[None])

    def one_step(stacked):
        model = _adapted(path, {"method": "lora", "rank": 4, "init": "gaussian"})
        model.set_remat(remat)
        if stacked:
            scan.stack_blocks(model)
        graphdef, trainable, rng, rest = nnx.split(model, trainable_filter({"method": "lora"}), nnx.RngState, ...)
        tx = optax.sgd(1.0)
        state, metrics = jax.jit(make_train_step(graphdef, tx, chunk=8))(
            TrainState(trainable, tx.init(trainable), rng, rest), batch)
        model = nnx.merge(graphdef, state.trainable, state.rng, state.frozen)
        scan.unstack_blocks(model)
        return float(metrics["loss"]), nnx.to_flat_state(nnx.state(model, trainable_filter({"method": "lora"})))

    (loss_a, a), (loss_b, b) = one_step(False), one_step(True)
    np.testing.assert_allclose(loss_b, loss_a, rtol=1e-6)
    assert [p for p, _ in a] == [p for p, _ in b]
    for (_, x), (_, y) in zip(a, b):
        np.testing.assert_allclose(np.asarray(y[...]), np.asarray(x[...]), rtol=1e-5, atol=1e-5)


@pytest.mark.long
def test_scanned_run_trains_and_restores_like_unrolled_on_a_mesh(tiny_model_dir, tmp_path):
    from conftest import write_rows
    from ftjax.train import loop
    from ftjax.train.restore import load_run
    from ftjax.workdir import read_metrics

    rng = np.random.RandomState(0)
    rows = [{"prompt": f"w3 w{a}", "completion": f" w{a % 7 + 1} w5"} for a in rng.randint(10, 100, 24)]
    data = {"data.train": write_rows(tmp_path / "train.jsonl", rows[:16]),
            "data.validation": write_rows(tmp_path / "val.jsonl", rows[16:])}
    common = {"model.path": str(tiny_model_dir), **data, "train.steps": 6, "train.batch_size": 8,
              "train.eval_every": 3, "mesh.shape": (2, 2, 2), "mesh.rules": "fsdp_tensor"}
    loop.main(sft_config(**common), tmp_path / "loop")
    loop.main(sft_config(**common, **{"model.scan_layers": True}), tmp_path / "scan")
    losses = lambda w: [m["loss"] for m in read_metrics(w) if "loss" in m]
    np.testing.assert_allclose(losses(tmp_path / "scan"), losses(tmp_path / "loop"), rtol=2e-5)

    (a, *_), (b, *_) = load_run(tmp_path / "loop"), load_run(tmp_path / "scan")
    assert not scan.is_stacked(b)  # tools after training see the unrolled blocks
    ids = jnp.asarray([[5, 9, 23, 7, 40]])
    np.testing.assert_allclose(np.asarray(b(ids)), np.asarray(a(ids)), atol=2e-5)


def test_blocks_built_differently_are_refused(hf_folder, tiny_model_dir):
    _, path = hf_folder("llama")
    model = _adapted(path, {"method": "lora", "rank": 4, "targets": r"re:model\.layers\.0\..*q_proj"})
    with pytest.raises(ValueError, match="block 1 differs from block 0"):
        scan.stack_blocks(model)

    from ftjax.train.setup import setup

    config = sft_config(**{"model.path": str(tiny_model_dir), "model.scan_layers": True,
                           "peft.unfreeze": r"layers\.0\.input_layernorm"})
    with pytest.raises(ValueError, match="select only some layers"):
        setup(config, total_steps=2)
