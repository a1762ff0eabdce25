"""Parity of every ported family with transformers, in float32, on a padded batch longer than the window."""

from __future__ import annotations

import json

import jax.numpy as jnp
import numpy as np
import pytest
import torch

import ftjax.models as M
from conftest import FAMILIES, padded_batch


def hf_logits(model, ids, mask, positions):
    with torch.no_grad():
        out = model(input_ids=torch.tensor(ids, dtype=torch.long), attention_mask=torch.tensor(mask),
                    position_ids=torch.tensor(positions, dtype=torch.long))
    return out.logits.float().numpy()


@pytest.mark.parametrize("family", list(FAMILIES))
def test_logits_match_transformers(family, hf_folder):
    hf, path = hf_folder(family)
    model = M.from_pretrained(path)
    ids, mask, positions = padded_batch()
    ours = np.asarray(model(jnp.asarray(ids), attention_mask=jnp.asarray(mask)))
    ref = hf_logits(hf, ids, mask, positions)
    valid = mask.astype(bool)
    assert np.abs(ours[valid] - ref[valid]).max() <= 1e-4


@pytest.mark.parametrize("family", ["llama", "gemma3_text", "gpt2"])
def test_save_pretrained_round_trip(family, hf_folder, tmp_path):
    import transformers

    hf, path = hf_folder(family)
    model = M.from_pretrained(path)
    out = M.save_pretrained(model, tmp_path / "saved")
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(out, attn_implementation="eager").eval()
    ids, mask, positions = padded_batch()
    np.testing.assert_allclose(hf_logits(reloaded, ids, mask, positions), hf_logits(hf, ids, mask, positions),
                               atol=1e-6)


def test_unsupported_model_type_is_one_line_error(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ValueError, match=r"unsupported model_type 'bert'; supported: llama, mistral"):
        M.from_pretrained(tmp_path)


def test_missing_path_is_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such model folder"):
        M.from_pretrained(str(tmp_path / "nope"))


def _resave(tmp_path, path, edit):
    from safetensors.numpy import load_file, save_file

    tensors = load_file(path / "model.safetensors")
    edit(tensors)
    out = tmp_path / "edited"
    out.mkdir()
    save_file(tensors, out / "model.safetensors")
    (out / "config.json").write_text((path / "config.json").read_text())
    return out


@pytest.mark.parametrize("edit, error, message", [
    (lambda t: t.__setitem__("model.extra.weight", np.zeros(3, np.float32)), KeyError, "model.extra.weight is not used"),
    (lambda t: t.pop("model.layers.1.mlp.up_proj.weight"), KeyError, r"model\.layers\.1\.mlp\.up_proj\.weight"),
    (lambda t: t.__setitem__("model.norm.weight", np.ones(7, np.float32)), ValueError,
     "shape mismatch for model.norm.weight"),
], ids=["unused", "missing", "shape"])
def test_a_bad_checkpoint_tensor_is_named(hf_folder, tmp_path, edit, error, message):
    _, path = hf_folder("llama")
    with pytest.raises(error, match=message):
        M.from_pretrained(_resave(tmp_path, path, edit))


def test_sharded_checkpoint_loads(hf_folder, tmp_path):
    hf, _ = hf_folder("qwen3")
    hf.save_pretrained(tmp_path, max_shard_size="20KB")
    assert (tmp_path / "model.safetensors.index.json").is_file()
    model = M.from_pretrained(tmp_path)
    ids, mask, positions = padded_batch()
    ours = np.asarray(model(jnp.asarray(ids), attention_mask=jnp.asarray(mask)))
    valid = mask.astype(bool)
    assert np.abs(ours[valid] - hf_logits(hf, ids, mask, positions)[valid]).max() <= 1e-4


def test_bfloat16_load_keeps_params_in_bf16(hf_folder):
    _, path = hf_folder("gemma")
    model = M.from_pretrained(path, dtype=jnp.bfloat16)
    assert model.model.layers[0].self_attn.q_proj.kernel[...].dtype == jnp.bfloat16
    logits = model(jnp.asarray(padded_batch()[0]))
    assert logits.dtype == jnp.float32 and np.isfinite(np.asarray(logits)).all()
