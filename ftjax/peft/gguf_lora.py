"""A LoRA adapter as a llama.cpp GGUF LoRA file (`ftjax export --format=gguf_lora`), for `llama-cli -m BASE.gguf
--lora ADAPTER.gguf`; the merged model's GGUF is ftjax/models/gguf_export.py."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import gguf
import numpy as np

from ftjax.models.gguf_export import encoded, gguf_arch, permute_rope_rows, write_file
from ftjax.peft.lora import lora_scale
from ftjax.peft.state import adapter_arrays


def write_gguf_lora(model: Any, path: str | os.PathLike, name: str | None = None, weights: str = "f32") -> Path:
    """Write the LoRA adapter `name` (default: the active one) of `model` as a llama.cpp GGUF LoRA adapter
    (`llama-cli -m BASE.gguf --lora PATH`): `general.type=adapter`, `adapter.lora.alpha`, and per adapted matrix
    `<gguf name>.lora_a` [r, in] and `.lora_b` [out, r], Llama's Q/K permutation applied to B's rows. Only
    plain LoRA fits the format (llama.cpp scales by alpha / r; an rsLoRA scale is folded into alpha)."""
    if weights not in ("f32", "f16", "bf16"):
        raise ValueError(f"GGUF LoRA weights {weights!r}; choose from f32, f16, bf16")
    spec, tensors = adapter_arrays(model, name)
    if spec.method != "lora" or spec.init == "pissa" or spec.unfrozen:
        what = "PiSSA" if spec.init == "pissa" else "unfrozen base weights" if spec.unfrozen else spec.method
        raise ValueError(f"a GGUF LoRA adapter holds plain LoRA factors only, not {what}; export the merged model "
                         "with --format=gguf")
    arch, names = gguf_arch(model)
    cfg = model.config
    scale = lora_scale(spec.alpha, spec.rank, spec.rslora)

    def fill(w: gguf.GGUFWriter) -> None:
        w.add_string("general.type", "adapter")
        w.add_string("adapter.type", "lora")
        w.add_float32("adapter.lora.alpha", float(scale * spec.rank))
        for target in spec.targets:
            gguf_name = names.get_name(f"{target}.weight", try_suffixes=(".weight",))
            if gguf_name is None:
                raise ValueError(f"{target} has no GGUF name for {arch}")
            a = np.asarray(tensors[f"{target}.lora_a"], np.float32).T  # [r, in]
            b = np.asarray(tensors[f"{target}.lora_b"], np.float32).T  # [out, r]
            kind = gguf_name.rsplit(".", 2)[-2]
            if arch == "llama" and kind in ("attn_q", "attn_k"):
                b = permute_rope_rows(b, cfg.num_heads if kind == "attn_q" else cfg.num_kv_heads)
            for suffix, array in (("lora_a", a), ("lora_b", b)):
                w.add_tensor(f"{gguf_name}.{suffix}", *encoded(np.ascontiguousarray(array), weights))

    return write_file(path, arch, fill)
