"""Sharded training on 8 fake CPU devices: same numbers as one device, parameters placed as the rules say."""

from __future__ import annotations

import re

import jax
import numpy as np
import pytest
from flax import nnx

from conftest import FAMILIES, sft_config, write_rows
from ftjax import sharding
from ftjax.train.batches import load_split, step_batch
from ftjax.train.setup import setup
from ftjax.data.pipeline import Batches
from ftjax.models.tokenizer import load_tokenizer

# Logical names -> mesh axes for each preset on a (data, fsdp, tensor) = (2, 2, 2) mesh, for a LoRA'd Llama
# with even dims (vocab 132, width 40, kv width 20, mlp 52). "-" = not sharded; rank dims never are.
GOLDEN = """
parameter                                        replicated  fsdp     tensor     fsdp_tensor
model.embed_tokens.embedding                     -,-         -,fsdp   tensor,-   tensor,fsdp
model.layers.*.input_layernorm.weight            -           -        -          -
model.layers.*.self_attn.q_proj.kernel           -,-         fsdp,-   -,tensor   fsdp,tensor
model.layers.*.self_attn.q_proj.adapters.default.lora_a  -,- fsdp,-   -,-        fsdp,-
model.layers.*.self_attn.q_proj.adapters.default.lora_b  -,- -,-      -,tensor   -,tensor
model.layers.*.self_attn.k_proj.kernel           -,-         fsdp,-   -,tensor   fsdp,tensor
model.layers.*.self_attn.v_proj.adapters.default.lora_b  -,- -,-      -,tensor   -,tensor
model.layers.*.self_attn.o_proj.kernel           -,-         -,fsdp   tensor,-   tensor,fsdp
model.layers.*.self_attn.o_proj.adapters.default.lora_a  -,- -,-      tensor,-   tensor,-
model.layers.*.self_attn.o_proj.adapters.default.lora_b  -,- -,fsdp   -,-        -,fsdp
model.layers.*.mlp.up_proj.kernel                -,-         fsdp,-   -,tensor   fsdp,tensor
model.layers.*.mlp.down_proj.kernel              -,-         -,fsdp   tensor,-   tensor,fsdp
model.layers.*.mlp.down_proj.adapters.default.lora_a  -,-    -,-      tensor,-   tensor,-
model.norm.weight                                -           -        -          -
lm_head.kernel                                   -,-         fsdp,-   -,tensor   fsdp,tensor
"""
PRESETS = GOLDEN.split()[1:5]
MESHES = [(8, 1, 1), (2, 4, 1), (2, 2, 2)]


def golden() -> dict[str, dict[str, tuple]]:
    table = {}
    for line in GOLDEN.strip().splitlines()[1:]:
        name, *specs = line.split()
        table[name] = {p: tuple(None if a == "-" else a for a in s.split(",")) for p, s in zip(PRESETS, specs)}
    return table


def spec_of(names, shape, mesh, rules) -> tuple:
    spec = tuple(sharding.logical_spec(names, shape, mesh, rules))
    return spec + (None,) * (len(shape) - len(spec))


@pytest.fixture(scope="module")
def lora_llama():
    import transformers

    from ftjax.models.config import from_hf
    from ftjax.models.loading import build
    from ftjax.peft.apply import apply_peft

    cfg = from_hf(transformers.LlamaConfig(**dict(FAMILIES["llama"][1], vocab_size=132)))
    return apply_peft(build(cfg), {"method": "lora", "rank": 3}, nnx.Rngs(0))


@pytest.mark.parametrize("preset", PRESETS)
def test_rules_place_parameters_as_the_golden_table(lora_llama, preset):
    mesh = sharding.make_mesh((2, 2, 2))
    state = nnx.state(lora_llama, nnx.Param)
    placed = jax.device_put(state, sharding.state_shardings(state, mesh, preset))
    names_of = {p: v.get_metadata().get("out_sharding") for p, v in nnx.to_flat_state(state)}
    seen = set()
    for path, var in nnx.to_flat_state(placed):
        key, array, names = re.sub(r"\.\d+\.", ".*.", ".".join(map(str, path))), var.get_value(), names_of[path]
        assert names, f"{key} has no logical axis names"
        spec = spec_of(names, array.shape, mesh, sharding.RULES[preset])
        if key in golden():
            assert spec == golden()[key][preset], key
            seen.add(key)
        # really sharded: each device holds the global shape divided by the mesh axes of its spec
        local = tuple(d // (mesh.shape[a] if a else 1) for d, a in zip(array.shape, spec))
        assert {s.data.shape for s in array.addressable_shards} == {local}, key
    assert seen == set(golden())


@pytest.fixture(scope="module")
def tiny(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("sharding")
    rng = np.random.RandomState(1)
    rows = [{"prompt": "w3 " + " ".join(f"w{rng.randint(10, 100)}" for _ in range(rng.randint(1, 9))),
             "completion": f" w{rng.randint(10, 100)} w5"} for _ in range(32)]
    return {"model.path": str(tiny_model_dir), "data.train": write_rows(root / "train.jsonl", rows),
            "data.validation": "", "train.batch_size": 8}


def two_steps(tiny, shape, rules="fsdp_tensor"):
    """Losses of two train steps on the same batches, and the updated adapter, on a `shape` mesh."""
    config = sft_config(**tiny, **{"mesh.shape": shape, "mesh.rules": rules})
    run = setup(config, total_steps=2)
    _, examples = load_split("train", config, load_tokenizer(config.model.path))
    batches = Batches(examples, batch_size=8, seq_len=config.data.max_length, seed=0)
    state, losses = run.state, []
    for _ in range(2):
        batch = sharding.put_batch(step_batch(batches, 1), run.batch_shardings)
        state, m = run.train_step(state, batch)
        losses.append(float(m["loss"]))
    return losses, {p: np.asarray(v.get_value()) for p, v in nnx.to_flat_state(state.trainable)}, state.trainable


@pytest.fixture(scope="module")
def one_device(tiny):
    return two_steps(tiny, (1, 1, 1))


@pytest.mark.parametrize("shape", [pytest.param(m, marks=pytest.mark.long) if m != (2, 2, 2) else m for m in MESHES])
def test_sharded_step_equals_one_device(tiny, one_device, shape):
    losses, adapter, trainable = two_steps(tiny, shape)
    ref_losses, ref_adapter, _ = one_device
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-5, atol=1e-5)
    assert adapter.keys() == ref_adapter.keys() and len(adapter) == 3 * 7 * 2
    for path, value in adapter.items():
        np.testing.assert_allclose(value, ref_adapter[path], rtol=1e-5, atol=1e-5, err_msg=str(path))
    assert not np.allclose(losses[0], losses[1])  # the adapter did change
    if shape == (2, 2, 2):  # the donated, updated adapter keeps the rules' placement
        lora_a = trainable["model"]["layers"][0]["mlp"]["up_proj"]["adapters"]["default"]["lora_a"]
        assert lora_a.get_value().sharding.spec == jax.sharding.PartitionSpec("fsdp", None)


def test_fsdp_puts_an_eighth_of_the_base_on_each_device(tiny):
    config = sft_config(**tiny, **{"mesh.shape": (1, 8, 1), "mesh.rules": "fsdp"})
    run = setup(config, total_steps=1)
    per_device, total = {}, 0
    for _, v in nnx.to_flat_state(nnx.filter_state(run.state.frozen, nnx.Param)):
        total += v.get_value().nbytes
        for s in v.get_value().addressable_shards:
            per_device[s.device] = per_device.get(s.device, 0) + s.data.nbytes
    assert len(per_device) == 8
    for nbytes in per_device.values():  # only the 1-D norm weights stay whole on every device
        assert total / 8 <= nbytes < 1.06 * total / 8


def test_bench_counts_model_flops_by_the_formula(tiny, monkeypatch):
    from ftjax.train import bench

    monkeypatch.setattr(bench, "cpu_matmul_peak", lambda dtype: 1e11)
    r = bench.measure(sft_config(**tiny), steps=2, warmup=1)
    # tiny llama: 3 layers, width 40, 4 heads x 10, kv 2 x 10, mlp 52, vocab 131; LoRA r=4 on the 7 linears
    frozen, lora = 3 * (40 * 40 * 2 + 40 * 20 * 2 + 3 * 40 * 52), 3 * 4 * (80 * 2 + 60 * 2 + 92 * 3)
    assert (r["matmul_params_frozen"], r["matmul_params_trainable"]) == (frozen, lora) == (33120, 6672)
    per_token, per_target = 4 * frozen + 6 * lora + 12 * 3 * 40 * r["seq_len"], 4 * 40 * 131
    want = r["tokens_per_step"] * per_token + r["target_tokens_per_step"] * per_target
    assert r["model_flops_per_step"] == pytest.approx(want)
    assert r["mfu"] == pytest.approx(want / r["step_s_mean"] / 1e11)
    assert r["step_s_mean"] > 0 and r["tokens_per_s"] > 0 and r["peak_memory_bytes"] > 0
    from ftjax.hardware import host_cpu

    assert f"host         {host_cpu()}" in bench.report(r)  # the seconds compare only within one kind of host
    assert bench.device_peak(type("D", (), {"device_kind": "TPU v5 lite"})) == ("TPU v5e", 197e12)
    assert bench.device_peak(type("D", (), {"device_kind": "NVIDIA H100 80GB HBM3"}))[1] == 989e12


def test_sharded_load_reads_and_places_only_each_devices_block(tmp_path, monkeypatch):
    """from_pretrained(mesh=...) builds every parameter on the mesh from per-device blocks of the file: no read
    is ever a whole sharded tensor, no device holds more than its shard, and the values equal a plain load."""
    import torch
    import transformers

    import ftjax.models as M
    from ftjax.models import loading

    torch.manual_seed(0)
    folder = tmp_path / "llama"
    config = transformers.LlamaConfig(**dict(FAMILIES["llama"][1], vocab_size=132))
    transformers.AutoModelForCausalLM.from_config(config).to(torch.bfloat16).save_pretrained(folder)
    reads: list[tuple[str, tuple, int]] = []  # (key, block shape, full size)
    opened = loading._open_safetensors

    class Recording:
        def __init__(self, handle):
            self.handle = handle

        def keys(self):
            return self.handle.keys()

        def get_slice(self, key):
            part = self.handle.get_slice(key)

            class Slice:
                def get_shape(self):
                    return part.get_shape()

                def __getitem__(self, index):
                    block = part[index]
                    reads.append((key, block.shape, int(np.prod(part.get_shape()))))
                    return block

            return Slice()

        def get_tensor(self, key):
            raise AssertionError(f"sharded load read the whole of {key}")

    monkeypatch.setattr(loading, "_open_safetensors", lambda path: Recording(opened(path)))
    mesh = sharding.make_mesh((2, 2, 2))
    model = M.from_pretrained(folder, mesh=mesh, rules="fsdp_tensor")
    monkeypatch.setattr(loading, "_open_safetensors", opened)
    plain = M.from_pretrained(folder)

    placed = dict(nnx.to_flat_state(sharding.state_shardings(nnx.state(model, nnx.Param), mesh, "fsdp_tensor")))
    plain_params = dict(nnx.to_flat_state(nnx.state(plain, nnx.Param)))
    split = 0
    for path, var in nnx.to_flat_state(nnx.state(model, nnx.Param)):
        arr = var[...]
        assert arr.sharding.is_equivalent_to(placed[path], arr.ndim)
        shard = placed[path].shard_shape(arr.shape)
        assert all(s.data.shape == shard for s in arr.addressable_shards)
        np.testing.assert_array_equal(np.asarray(arr), np.asarray(plain_params[path][...]))
        split += shard != arr.shape
    assert split >= 10  # the kernels and the embedding are split over the mesh
    sharded_keys = {k for k, shape, full in reads if int(np.prod(shape)) < full}
    assert all(int(np.prod(shape)) < full for k, shape, full in reads if k in sharded_keys)
    assert len(sharded_keys) >= 10
