"""Adapter folders on disk: save and load, checked against the base model.

An adapter folder holds `adapter.safetensors` (the tensors of `ftjax.peft.state.adapter_state`, keyed by module
path without the adapter name) and `adapter.json` (the AdapterSpec plus the base model it belongs to). Loading
checks family and shapes before touching the model; a Hugging Face PEFT folder is imported (hf_import.py).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flax import nnx

from ftjax.io import atomic_dir
from ftjax.peft.apply import add_adapter
from ftjax.peft.state import AdapterSpec, adapter_arrays, set_adapter_state

FORMAT = "ftjax-adapter"
WEIGHTS, META = "adapter.safetensors", "adapter.json"


def base_summary(model: nnx.Module) -> dict[str, Any]:
    cfg = model.config
    hf = getattr(model, "hf_config", None) or {}
    return {"model_type": cfg.model_type, "name_or_path": hf.get("_name_or_path") or None,
            "vocab_size": cfg.vocab_size, "hidden_size": cfg.hidden_size, "num_layers": cfg.num_layers,
            "num_heads": cfg.num_heads, "num_kv_heads": cfg.num_kv_heads, "head_dim": cfg.head_dim,
            "intermediate_size": cfg.intermediate_size}


def save_adapter(model: nnx.Module, out_dir: str | os.PathLike, name: str | None = None,
                 overwrite: bool = False) -> Path:
    """Write adapter `name` (default: the active one) to `out_dir` atomically (temp folder, then rename); an
    existing folder is replaced only if `overwrite`."""
    from safetensors.numpy import save_file

    spec, tensors = adapter_arrays(model, name)
    meta = {"format": FORMAT, "version": 1, "adapter": dataclasses.asdict(spec), "base_model": base_summary(model)}
    out = Path(out_dir)
    with atomic_dir(out, overwrite) as tmp:
        save_file(tensors, tmp / WEIGHTS, metadata={"format": "np"})
        (tmp / META).write_text(json.dumps(meta, indent=2))
    return out


def load_adapter(model: nnx.Module, path: str | os.PathLike, name: str | None = None,
                 rngs: nnx.Rngs | None = None) -> str:
    """Add the adapter saved at `path` (ftjax, or Hugging Face PEFT when the folder has adapter_config.json)
    to `model` as `name` (default: its saved name), make it active, and return the name."""
    path = Path(path)
    if adapter_format(path) == "peft":
        from ftjax.peft.hf_import import import_peft

        return import_peft(model, path, name=name, rngs=rngs)
    from safetensors.numpy import load_file

    meta = json.loads((path / META).read_text())
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path / META} is not an ftjax adapter (format {meta.get('format')!r})")
    check_base(model, meta["base_model"], str(path))
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in meta["adapter"].items()}
    spec = AdapterSpec(**{**fields, **({"name": name} if name else {})})
    add_adapter(model, spec, rngs)
    set_adapter_state(model, spec.name, load_file(path / WEIGHTS), str(path))
    return spec.name


def adapter_format(path: str | os.PathLike) -> str:
    """'ftjax' or 'peft' (Hugging Face PEFT) for an adapter folder; FileNotFoundError for anything else."""
    path = Path(path)
    if (path / META).is_file():
        return "ftjax"
    if (path / "adapter_config.json").is_file():
        return "peft"
    raise FileNotFoundError(f"{path} is not an adapter folder (no {META} or adapter_config.json)")


def check_base(model: nnx.Module, base: Mapping[str, Any], source: str) -> None:
    ours = base_summary(model)
    for key in ("model_type", "vocab_size", "hidden_size", "num_layers", "num_heads", "num_kv_heads", "head_dim",
                "intermediate_size"):
        if key in base and base[key] != ours[key]:
            raise ValueError(f"adapter {source} belongs to a {base['model_type']} model with {key}={base[key]}, "
                             f"but this model is {ours['model_type']} with {key}={ours[key]}")
