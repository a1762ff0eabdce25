"""Trainable vs total parameters and adapter size on disk, per fine-tuning method, from shapes alone.

`method_table(model_config, ...)` builds each variant under `nnx.eval_shape`, so a 270M or 7B model costs no
memory; `parameter_report(model, cfg)` measures a real (or abstract) adapted model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np
from flax import nnx

from ftjax.models.config import ModelConfig
from ftjax.models.heads import HeadParam
from ftjax.models.loading import build
from ftjax.peft.apply import apply_peft, trainable_filter
from ftjax.peft.config import METHODS, peft_config
from ftjax.peft.state import saved_variables

def _count(state: nnx.State) -> tuple[int, int]:
    """(parameters, bytes) of every variable in `state` (works on abstract shapes too)."""
    params = nbytes = 0
    for _, var in nnx.to_flat_state(state):
        size = int(np.prod(var.shape))
        params += size
        nbytes += size * jnp.dtype(var.dtype).itemsize
    return params, nbytes


def _in_adapter_any(path: tuple[Any, ...], _: Any) -> bool:
    return "adapters" in path


def parameter_report(model: nnx.Module, cfg: Any) -> dict[str, Any]:
    """Counts for `model` adapted by `cfg`: base parameters (task heads are not base), trainable ones (with
    any task head), and the bytes its checkpoint holds (the adapter's tensors; the whole model for full
    fine-tuning; safetensors adds a small header)."""
    cfg = peft_config(cfg) if isinstance(cfg, Mapping) else cfg
    base_filter = nnx.All(nnx.Param, nnx.Not(_in_adapter_any), nnx.Not(HeadParam))
    base, base_bytes = _count(nnx.state(model, base_filter))
    trainable, _ = _count(nnx.state(model, trainable_filter(cfg)))
    if cfg.method == "full":
        saved = base_bytes
    else:
        saved = sum(int(np.prod(v.shape)) * jnp.dtype(v.dtype).itemsize
                    for _, v in saved_variables(model, cfg.name).values())
    return {"method": cfg.method, "base_params": base, "trainable_params": trainable,
            "trainable_percent": 100.0 * trainable / base, "saved_bytes": saved}


def method_table(model_config: ModelConfig, methods: Sequence[str] = METHODS,
                 overrides: Mapping[str, Any] | None = None, dtype: Any = jnp.bfloat16) -> list[dict[str, Any]]:
    """One `parameter_report` row per method, the base built abstractly in `dtype`."""
    rows = []
    for method in methods:
        cfg = peft_config({**(overrides or {}), "method": method})
        abstract = nnx.eval_shape(lambda: apply_peft(build(model_config, dtype), cfg, nnx.Rngs(0)))
        rows.append(parameter_report(abstract, cfg) | {"settings": describe(cfg)})
    return rows


def describe(cfg: Any) -> str:
    if cfg.method in ("lora", "dora"):
        extra = ", rsLoRA" if cfg.rslora else ""
        return f"r={cfg.rank}, alpha={cfg.alpha:g}, targets={cfg.targets or 'all-linear'}{extra}"
    if cfg.method == "ia3":
        return f"targets={cfg.targets or 'k_proj,v_proj,down_proj'}"
    if cfg.method in ("prompt", "prefix"):
        return f"{cfg.num_virtual_tokens} virtual tokens"
    return f"all weights{', frozen: ' + cfg.freeze if cfg.freeze else ''}"


def markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    lines = ["| method | settings | trainable params | % of base | saved size |", "|---|---|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['method']} | {r['settings']} | {r['trainable_params']:,} | "
                     f"{r['trainable_percent']:.3f}% | {_human(r['saved_bytes'])} |")
    return "\n".join(lines)


def _human(n: float) -> str:
    if n < 1024:
        return f"{n:.0f} B"
    for unit in ("KB", "MB", "GB"):
        n /= 1024
        if n < 1024 or unit == "GB":
            return f"{n:.1f} {unit}"
