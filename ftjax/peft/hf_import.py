"""Import a Hugging Face PEFT adapter folder (layouts: see hf_export.py) as a trainable ftjax adapter."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from pathlib import Path

import numpy as np
from flax import nnx

from ftjax.models.convert import nnx_to_hf_key, transposed
from ftjax.peft.apply import add_adapter, linear_layers
from ftjax.peft.hf_export import PREFIX
from ftjax.peft.state import AdapterSpec, set_adapter_state

SUPPORTED = ("LORA", "IA3", "PROMPT_TUNING", "PREFIX_TUNING")


def import_peft(model: nnx.Module, path: str | os.PathLike, name: str | None = None,
                rngs: nnx.Rngs | None = None) -> str:
    """Add a Hugging Face PEFT adapter (LoRA, DoRA, (IA)3, prompt or prefix tuning) to `model` as a trainable
    ftjax adapter named `name` (default 'default'); make it active and return its name."""
    from safetensors.numpy import load_file

    path = Path(path)
    conf = json.loads((path / "adapter_config.json").read_text())
    weights = path / "adapter_model.safetensors"
    if not weights.is_file():
        raise FileNotFoundError(f"{path} has no adapter_model.safetensors (PEFT's .bin format is not supported)")
    kind = conf.get("peft_type")
    if kind not in SUPPORTED:
        raise ValueError(f"PEFT method {kind} is not supported; supported: {', '.join(SUPPORTED)}")
    raw = load_file(weights)
    saved = _modules_to_save(model, raw, conf.get("modules_to_save") or [])
    name = name or "default"
    cfg = model.config
    tensors: dict[str, np.ndarray] = {}
    if kind == "LORA":
        if conf.get("bias", "none") != "none" or conf.get("lora_bias"):
            raise ValueError(f"PEFT adapter {path} trains biases, which is not supported")
        if conf.get("rank_pattern") or conf.get("alpha_pattern"):
            raise ValueError(f"PEFT adapter {path} uses per-layer ranks (rank_pattern/alpha_pattern), not supported")
        targets = []
        for key, v in raw.items():
            module, tensor = _split_key(key, (".lora_A.weight", ".lora_B.weight", ".lora_magnitude_vector.weight",
                                              ".lora_magnitude_vector"), path)
            targets.append(module)
            local = {".lora_A.weight": "lora_a", ".lora_B.weight": "lora_b"}.get(tensor, "magnitude")
            tensors[f"{module}.{local}"] = v.T if local != "magnitude" else v
        dora = bool(conf.get("use_dora"))
        spec = AdapterSpec(name=name, method="dora" if dora else "lora", targets=_ordered(model, targets),
                           rank=int(conf["r"]), alpha=float(conf["lora_alpha"]),
                           dropout=float(conf.get("lora_dropout") or 0.0), rslora=bool(conf.get("use_rslora")),
                           init="kaiming")
    elif kind == "IA3":
        ff_conf = conf.get("feedforward_modules") or []
        targets, ff = [], []
        for key, v in raw.items():
            module, _ = _split_key(key, (".ia3_l",), path)
            targets.append(module)
            is_ff = re.fullmatch(ff_conf, module) if isinstance(ff_conf, str) else any(
                module.endswith(f) for f in ff_conf)
            ff += [module] if is_ff else []
            tensors[f"{module}.ia3_l"] = v.reshape(-1)
        spec = AdapterSpec(name=name, method="ia3", targets=_ordered(model, targets), feedforward=_ordered(model, ff))
    else:
        if conf.get("prefix_projection"):
            raise ValueError(f"PEFT adapter {path} uses prefix_projection (an MLP over the prefix), not supported")
        emb = raw["prompt_embeddings"]
        n = int(conf["num_virtual_tokens"])
        spec = AdapterSpec(name=name, method="prompt" if kind == "PROMPT_TUNING" else "prefix", num_virtual_tokens=n)
        if kind == "PROMPT_TUNING":
            tensors[f"{model.layout.backbone}.prompt.embeddings"] = emb
        else:
            shape = (n, cfg.num_layers, 2, cfg.num_kv_heads, cfg.head_dim)
            if emb.size != math.prod(shape):
                raise ValueError(f"PEFT prefix {path} has shape {emb.shape}, which does not fit this base model")
            kv = emb.reshape(shape)
            for i in range(cfg.num_layers):
                attn = model.layout.attention_path(i)
                tensors[f"{attn}.prefix.key"] = kv[:, i, 0]
                tensors[f"{attn}.prefix.value"] = kv[:, i, 1]
    add_adapter(model, dataclasses.replace(spec, unfrozen=tuple(saved)), rngs)
    set_adapter_state(model, name, tensors | saved, str(path))
    return name


def _modules_to_save(model: nnx.Module, raw: dict[str, np.ndarray], modules: list[str]) -> dict[str, np.ndarray]:
    """Pop the whole-module copies PEFT saves for `modules_to_save` out of `raw`, as ftjax base parameters."""
    if not modules:
        return {}
    base = {nnx_to_hf_key(p): p for p, _ in nnx.to_flat_state(nnx.state(model, nnx.Param)) if "adapters" not in p}
    out = {}
    for key in list(raw):
        hf = key[len(PREFIX):]
        if key.startswith(PREFIX) and hf in base and any(hf.rsplit(".", 1)[0].endswith(m) for m in modules):
            p, value = base[hf], raw.pop(key)
            out[".".join(map(str, p))] = value.T if transposed(model.layout, p) else value
    return out


def _split_key(key: str, suffixes: tuple[str, ...], path: Path) -> tuple[str, str]:
    for s in suffixes:
        if key.startswith(PREFIX) and key.endswith(s):
            return key[len(PREFIX):-len(s)], s
    raise ValueError(f"PEFT adapter {path} has tensor {key}, which ftjax cannot map")


def _ordered(model: nnx.Module, paths: list[str]) -> tuple[str, ...]:
    wanted = set(paths)
    known = [p for p in linear_layers(model) if p in wanted]
    if len(known) != len(wanted):
        raise ValueError(f"adapter targets {sorted(wanted - set(known))[0]}, which this model does not have")
    return tuple(known)
