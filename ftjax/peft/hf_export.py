"""Export an adapter as a Hugging Face PEFT folder (`adapter_config.json` + `adapter_model.safetensors`).

PEFT keys are `base_model.model.<transformers module path>.<tensor>`; ftjax module paths equal the
transformers ones. Layouts: lora_A.weight [r, in], lora_B.weight [out, r] (also for GPT-2's Conv1D layers,
where only the base weight is [in, out] and the config says fan_in_fan_out), lora_magnitude_vector [out],
ia3_l [out, 1] or [1, in] for feed-forward layers, prompt_embeddings [n, hidden] (prompt tuning) or
[n, layers * 2 * kv_heads * head_dim] (prefix tuning: per layer, keys then values); base weights trained too
(peft.unfreeze) travel as PEFT's modules_to_save, and so does a classification head (task SEQ_CLS, module
`score`, the label names in labels.json). The written config uses only long-standing keys, so older
PEFT versions load it too. hf_import.py reads the same layouts back.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
from flax import nnx

from ftjax.io import atomic_dir
from ftjax.models.convert import nnx_to_hf_key, transposed
from ftjax.models.heads import export_head
from ftjax.peft.apply import linear_layers
from ftjax.peft.state import AdapterSpec, adapter_arrays, to_numpy

PREFIX = "base_model.model."


def export_peft(model: nnx.Module, out_dir: str | os.PathLike, name: str | None = None,
                base_model_name_or_path: str | None = None, overwrite: bool = False) -> Path:
    """Write adapter `name` (default: active) as a PEFT folder that `PeftModel.from_pretrained` loads; an
    existing folder is replaced only if `overwrite`."""
    from safetensors.numpy import save_file

    spec, state = adapter_arrays(model, name)
    cfg, layout = model.config, model.layout
    base = base_model_name_or_path or (getattr(model, "hf_config", None) or {}).get("_name_or_path") or None
    common = {"task_type": "CAUSAL_LM", "base_model_name_or_path": base, "inference_mode": True}
    tensors: dict[str, np.ndarray] = {}
    if spec.method in ("lora", "dora"):
        rank, scale = spec.rank, spec.alpha / (math.sqrt(spec.rank) if spec.rslora else spec.rank)
        for path in spec.targets:
            a, b = state[f"{path}.lora_a"], state[f"{path}.lora_b"]
            if spec.init == "pissa":  # s (A B - A0 B0) as one rank-2r LoRA
                a = np.concatenate([a, state[f"{path}.lora_a0"]], 1)
                b = np.concatenate([b, -state[f"{path}.lora_b0"]], 0)
            tensors[f"{PREFIX}{path}.lora_A.weight"] = a.T
            tensors[f"{PREFIX}{path}.lora_B.weight"] = b.T
            if spec.method == "dora":
                tensors[f"{PREFIX}{path}.lora_magnitude_vector"] = state[f"{path}.magnitude"]
        if spec.init == "pissa":
            rank *= 2
        alpha = scale * (math.sqrt(rank) if spec.rslora else rank)  # keeps s when the rank doubled
        names, _ = _module_names(model, spec.targets, ())
        config = {**common, "peft_type": "LORA", "r": rank, "lora_alpha": alpha, "lora_dropout": spec.dropout,
                  "target_modules": names, "fan_in_fan_out": layout.hf_kernels_in_out, "bias": "none",
                  "init_lora_weights": True, "modules_to_save": None}
        if spec.rslora:
            config["use_rslora"] = True
        if spec.method == "dora":
            config["use_dora"] = True
    elif spec.method == "ia3":
        for path in spec.targets:
            v = state[f"{path}.ia3_l"]
            tensors[f"{PREFIX}{path}.ia3_l"] = v[None, :] if path in spec.feedforward else v[:, None]
        names, ff = _module_names(model, spec.targets, spec.feedforward)
        config = {**common, "peft_type": "IA3", "target_modules": names, "feedforward_modules": ff,
                  "fan_in_fan_out": layout.hf_kernels_in_out, "init_ia3_weights": True, "modules_to_save": None}
    elif spec.method == "prompt":
        tensors["prompt_embeddings"] = next(v for k, v in state.items() if k.endswith("prompt.embeddings"))
        config = {**common, **_prompt_dims(cfg, spec), "peft_type": "PROMPT_TUNING", "prompt_tuning_init": "RANDOM"}
    else:
        keys, values = _prefix_arrays(state, model)
        n = spec.num_virtual_tokens
        tensors["prompt_embeddings"] = np.stack([keys, values], 2).transpose(1, 0, 2, 3, 4).reshape(n, -1)
        dims = _prompt_dims(cfg, spec)
        token_dim = cfg.num_kv_heads * cfg.head_dim
        config = {**common, **dims, "peft_type": "PREFIX_TUNING", "token_dim": token_dim,
                  "num_attention_heads": cfg.num_kv_heads, "encoder_hidden_size": token_dim,
                  "prefix_projection": False}
    if spec.unfrozen:  # base weights trained too: PEFT's modules_to_save, saved whole, in transformers layout
        modules = sorted({p.rsplit(".", 1)[0] for p in spec.unfrozen})
        for path, var in nnx.to_flat_state(nnx.state(model, nnx.Param)):
            if ".".join(map(str, path[:-1])) in modules:
                arr = to_numpy(var[...])
                tensors[PREFIX + nnx_to_hf_key(path)] = arr.T if transposed(layout, path) else arr
        config["modules_to_save"] = modules
    exported = export_head(model)
    if exported:  # a sequence classifier: PEFT's SEQ_CLS task saves the head as the module `score`
        _, head = exported
        tensors[f"{PREFIX}score.weight"] = np.asarray(head.kernel[...], np.float32).T
        config["task_type"] = "SEQ_CLS"
        config["modules_to_save"] = sorted({*(config.get("modules_to_save") or []), "score"})
    out = Path(out_dir)
    with atomic_dir(out, overwrite) as tmp:
        if exported:  # the label names, for AutoModelForSequenceClassification(num_labels=..., id2label=...)
            (tmp / "labels.json").write_text(json.dumps(list(head.labels)))
        tensors = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
        save_file(tensors, tmp / "adapter_model.safetensors", metadata={"format": "pt"})
        (tmp / "adapter_config.json").write_text(json.dumps(config, indent=2))
    return out


def _prompt_dims(cfg: Any, spec: AdapterSpec) -> dict[str, Any]:
    return {"num_virtual_tokens": spec.num_virtual_tokens, "token_dim": cfg.hidden_size,
            "num_transformer_submodules": 1, "num_attention_heads": cfg.num_heads, "num_layers": cfg.num_layers}


def _prefix_arrays(state: dict[str, np.ndarray], model: nnx.Module) -> tuple[np.ndarray, np.ndarray]:
    """[layers, n, kv_heads, head_dim] keys and values from the per-attention prefix tensors."""
    paths = [model.layout.attention_path(i) for i in range(model.config.num_layers)]
    return (np.stack([state[f"{p}.prefix.key"] for p in paths]), np.stack([state[f"{p}.prefix.value"] for p in paths]))


def _module_names(model: nnx.Module, targets: tuple[str, ...], ff: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """The shortest module-name suffixes that PEFT matches to exactly these layers (`q_proj` when every
    q_proj is a target, else longer suffixes, at worst full paths). PEFT matches target_modules at a dot
    boundary and feedforward_modules by plain suffix."""
    layers = linear_layers(model)
    for depth in range(1, max(p.count(".") for p in targets) + 2):
        names = sorted({".".join(p.split(".")[-depth:]) for p in targets})
        ff_names = sorted({".".join(p.split(".")[-depth:]) for p in ff})
        hit = {p for p in layers if any(p == n or p.endswith("." + n) for n in names)}
        ff_hit = {p for p in targets if any(p.endswith(n) for n in ff_names)}
        if hit == set(targets) and ff_hit == set(ff):
            return names, ff_names
    raise AssertionError("full paths always match exactly")
