"""Adapter-only save and load: safetensors + JSON metadata, checked against the base model.

An adapter folder holds `adapter.safetensors` (keys are module paths with the adapter name dropped, e.g.
`model.layers.0.self_attn.q_proj.lora_a`, so an adapter loads under any name) and `adapter.json` (the
AdapterSpec plus the base model it belongs to). Loading checks family and shapes before touching the model.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np
from flax import nnx

from ftjax.peft.apply import apply_peft, linear_layers
from ftjax.peft.layer import LoRAInit
from ftjax.peft.named import AdapterSpec, active_adapter, adapter_spec

FORMAT = "ftjax-adapter"
WEIGHTS, META = "adapter.safetensors", "adapter.json"


def saved_variables(model: nnx.Module, name: str) -> dict[str, tuple[tuple[Any, ...], nnx.Variable]]:
    """What an adapter file holds, keyed by path with `adapters.<name>` dropped: the adapter's variables
    (trained and frozen ones) and the base parameters it unfroze."""
    unfrozen = set(adapter_spec(model, name).unfrozen)
    out = {}
    for path, var in nnx.to_flat_state(nnx.state(model, nnx.Any(nnx.Param, LoRAInit))):
        parts = [str(p) for p in path]
        if ".".join(parts) in unfrozen:
            out[".".join(parts)] = (path, var)
        for i in range(len(parts) - 1):
            if parts[i] == "adapters" and parts[i + 1] == name:
                out[".".join(parts[:i] + parts[i + 2:])] = (path, var)
    return out


def adapter_state(model: nnx.Module, name: str) -> dict[str, Any]:
    """The tensors an adapter file holds, by key (see `saved_variables`)."""
    return {k: var[...] for k, (_, var) in saved_variables(model, name).items()}


def set_adapter_state(model: nnx.Module, name: str, tensors: Mapping[str, Any], source: str) -> None:
    """Fill adapter `name` (and the base parameters it unfroze, shared by all adapters) from `tensors`; every
    key must be used and every shape equal."""
    current = saved_variables(model, name)
    missing = sorted(set(current) - set(tensors))
    unused = sorted(set(tensors) - set(current))
    if missing or unused:
        what = f"has no tensor {missing[0]}" if missing else f"tensor {unused[0]} fits nowhere in the model"
        raise ValueError(f"adapter {source} {what}")
    flat = []
    for key, (path, var) in current.items():
        value = np.asarray(tensors[key])
        if value.shape != tuple(var.shape):
            raise ValueError(f"adapter {source} does not fit this base model: {key} has shape {value.shape}, "
                             f"the model expects {tuple(var.shape)}")
        flat.append((path, var.replace(jnp.asarray(value, var.dtype))))
    nnx.update(model, nnx.from_flat_state(flat))


def base_summary(model: nnx.Module) -> dict[str, Any]:
    cfg = model.config
    hf = getattr(model, "hf_config", None) or {}
    return {"model_type": cfg.model_type, "name_or_path": hf.get("_name_or_path") or None,
            "vocab_size": cfg.vocab_size, "hidden_size": cfg.hidden_size, "num_layers": cfg.num_layers,
            "num_heads": cfg.num_heads, "num_kv_heads": cfg.num_kv_heads, "head_dim": cfg.head_dim,
            "intermediate_size": cfg.intermediate_size}


def save_adapter(model: nnx.Module, out_dir: str | os.PathLike, name: str | None = None) -> Path:
    """Write adapter `name` (default: the active one) to `out_dir` atomically (temp folder, then rename)."""
    from safetensors.numpy import save_file

    name = name or active_adapter(model)
    if name is None:
        raise ValueError("the model has no active adapter to save")
    spec = adapter_spec(model, name)
    tensors = {k: to_numpy(v) for k, v in adapter_state(model, name).items()}
    meta = {"format": FORMAT, "version": 1, "adapter": dataclasses.asdict(spec), "base_model": base_summary(model)}
    out = Path(out_dir)
    with atomic_dir(out) as tmp:
        save_file(tensors, tmp / WEIGHTS, metadata={"format": "np"})
        (tmp / META).write_text(json.dumps(meta, indent=2))
    return out


def load_adapter(model: nnx.Module, path: str | os.PathLike, name: str | None = None,
                 rngs: nnx.Rngs | None = None) -> str:
    """Add the adapter saved at `path` (ftjax, or Hugging Face PEFT when the folder has adapter_config.json)
    to `model` as `name` (default: its saved name), make it active, and return the name."""
    path = Path(path)
    if adapter_format(path) == "peft":
        from ftjax.peft.hf_peft_import import import_peft

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


def add_adapter(model: nnx.Module, spec: AdapterSpec, rngs: nnx.Rngs | None = None) -> None:
    """Create (randomly initialised) adapter structure matching `spec`; weights are filled in afterwards."""
    from ftjax.peft.config import peft_config

    layers = set(linear_layers(model))
    missing = [t for t in spec.targets if t not in layers]
    if missing:
        raise ValueError(f"adapter {spec.name!r} targets {missing[0]}, which this model does not have")
    overrides = {"method": spec.method, "name": spec.name, "dtype": spec.dtype,
                 "unfreeze": "^(?:" + "|".join(re.escape(p) for p in spec.unfrozen) + ")$" if spec.unfrozen else ""}
    if spec.targets:
        overrides["targets"] = _exactly(spec.targets)
    if spec.method == "ia3":
        overrides["feedforward"] = _exactly(spec.feedforward)
    elif spec.method in ("lora", "dora"):
        overrides.update(rank=spec.rank, alpha=spec.alpha, dropout=spec.dropout, rslora=spec.rslora, init=spec.init)
    else:
        overrides["num_virtual_tokens"] = spec.num_virtual_tokens
    apply_peft(model, peft_config(overrides), rngs)


def _exactly(paths: tuple[str, ...]) -> str:
    """A targets pattern matching exactly these module paths."""
    return "re:" + ("|".join(re.escape(p) for p in paths) or "(?!)")


def to_numpy(x: Any) -> np.ndarray:
    a = np.asarray(x)
    return a.astype(np.float32) if a.dtype == jnp.bfloat16 else a  # numpy safetensors has no bfloat16


@contextlib.contextmanager
def atomic_dir(out: Path) -> Iterator[Path]:
    """`with atomic_dir(out) as tmp:` write into tmp; on success tmp replaces out, on error nothing is left."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        yield tmp
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
