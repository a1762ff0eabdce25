"""Interop with Hugging Face PEFT: ftjax adapters exported and loaded by PEFT give ftjax's logits, PEFT adapters
imported into ftjax give PEFT's logits, and the merged export equals the unmerged adapter (float32, 1e-4)."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

import ftjax.models as M
from conftest import make_hf_model, padded_batch
from ftjax.peft import apply_peft, export_peft, load_adapter, merged_model
from test_models import hf_logits
from test_peft import logits, max_diff, randomize

# (family, peft overrides, also check the merged export): each method on several families, fused-qkv
# GPT-2 (Conv1D, fan_in_fan_out), a biased Llama, target subsets, rsLoRA and PiSSA (exported as rank 2r)
EXPORTS = [
    ("llama", {"method": "lora", "rank": 4, "alpha": 8, "targets": "q_proj,v_proj", "unfreeze": "input_layernorm"},
     False),
    ("llama3_tied", {"method": "dora", "rank": 3}, True),
    ("mistral", {"method": "ia3"}, True),
    ("qwen2", {"method": "lora", "rank": 4, "rslora": True, "init": "pissa"}, False),
    ("gemma3_text", {"method": "dora", "rank": 4, "rslora": True, "targets": "re:.*layers\\.[13]\\..*"}, False),
    ("gemma2", {"method": "ia3", "targets": "q_proj,o_proj,up_proj,down_proj", "feedforward": "down_proj,o_proj"},
     False),
    ("gpt2", {"method": "lora", "rank": 4, "targets": "attn.c_proj,c_attn,c_fc"}, True),
]


def peft_logits(hf_model, adapter_dir, ids=None, mask=None, positions=None):
    from peft import PeftModel

    if ids is None:
        ids, mask, positions = padded_batch()
    model = PeftModel.from_pretrained(copy.deepcopy(hf_model), adapter_dir).eval()  # the fixture's model is shared
    return hf_logits(model, ids, mask, positions)


@pytest.mark.parametrize("family,overrides,merged", EXPORTS, ids=[f"{f}-{o['method']}" for f, o, _ in EXPORTS])
def test_export_loads_in_peft_with_same_logits(family, overrides, merged, hf_folder, tmp_path):
    import transformers

    hf, path = hf_folder(family)
    model = M.from_pretrained(path)
    apply_peft(model, overrides)
    randomize(model, seed=3, unfreeze=overrides.get("unfreeze", ""))
    ours = logits(model)
    out = export_peft(model, tmp_path / "peft", base_model_name_or_path=str(path))
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(path) and "peft_version" not in config
    assert max_diff(ours, peft_logits(hf, out)) <= 1e-4
    assert max_diff(ours, hf_logits(hf, *padded_batch())) > 1e-3  # the adapter does something
    if merged:
        from safetensors.numpy import load_file

        folder = M.save_pretrained(merged_model(model), tmp_path / "merged")
        assert load_file(folder / "model.safetensors").keys() == load_file(path / "model.safetensors").keys()
        plain = transformers.AutoModelForCausalLM.from_pretrained(folder, attn_implementation="eager").eval()
        assert max_diff(hf_logits(plain, *padded_batch()), ours) <= 1e-4


def test_short_target_names_only_when_exact(hf_folder, tmp_path):
    model = M.from_pretrained(hf_folder("gpt2")[1])
    apply_peft(model, {"method": "lora", "targets": "attn.c_proj,c_attn"})
    config = json.loads((export_peft(model, tmp_path / "a") / "adapter_config.json").read_text())
    # c_proj alone would also match mlp.c_proj, so the names get one more component
    assert config["target_modules"] == ["attn.c_attn", "attn.c_proj"] and config["fan_in_fan_out"] is True


def _peft_adapter(family, config, tmp_path, seed=0):
    """A PEFT adapter with random weights on a fresh copy of the fixture's transformers model, saved."""
    from peft import get_peft_model

    peft_model = get_peft_model(make_hf_model(family), config)
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if p.requires_grad:
                p.mul_(1 + 0.2 * torch.randn_like(p)) if ("magnitude" in name or "ia3" in name) else \
                    p.add_(0.2 * torch.randn_like(p))
    peft_model.save_pretrained(tmp_path / "from_peft")
    return tmp_path / "from_peft"


def _peft_configs():
    import peft

    return [
        ("gemma", peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "down_proj"], use_rslora=True,
                                  modules_to_save=["input_layernorm"])),
        ("gpt2", peft.LoraConfig(r=3, lora_alpha=6, target_modules=["c_attn", "c_fc"], use_dora=True,
                                 fan_in_fan_out=True)),
        ("qwen3", peft.IA3Config(target_modules=["k_proj", "v_proj", "down_proj"], feedforward_modules=["down_proj"])),
        ("llama", peft.PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4)),
        ("llama", peft.PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=3)),
    ]


@pytest.mark.parametrize("index", range(5), ids=["lora", "dora", "ia3", "prompt", "prefix"])
def test_import_peft_adapter_and_keep_training(index, hf_folder, tmp_path):
    import warnings

    family, config = _peft_configs()[index]
    folder = _peft_adapter(family, config, tmp_path)
    hf, path = hf_folder(family)
    model = M.from_pretrained(path)
    assert load_adapter(model, folder, name="imported") == "imported"
    ids, mask, positions = padded_batch()
    if index == 3:  # PEFT ignores position_ids for prompt tuning: compare rows without padding
        ids, mask = ids[:1], mask[:1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = peft_logits(hf, folder, ids, mask, positions[:len(ids)])
    if index == 3:
        ref = ref[:, config.num_virtual_tokens:]  # PEFT returns the virtual tokens' logits too; ftjax drops them
    ours = logits(model, ids, mask)
    valid = mask.astype(bool)
    assert np.abs(ours[valid] - ref[valid]).max() <= 1e-4
    # round trip back to PEFT: the same files, up to layout
    out = export_peft(model, tmp_path / "again")
    from safetensors.numpy import load_file

    first, second = load_file(folder / "adapter_model.safetensors"), load_file(out / "adapter_model.safetensors")
    assert first.keys() == second.keys()
    for k in first:
        np.testing.assert_allclose(second[k], first[k], atol=1e-6)


def test_unsupported_peft_adapter_is_clear_error(hf_folder, tmp_path):
    folder = tmp_path / "loha"
    folder.mkdir()
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LOHA"}))
    (folder / "adapter_model.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match="PEFT method LOHA is not supported"):
        load_adapter(M.from_pretrained(hf_folder("llama")[1]), folder)
