"""`from_pretrained` (local folder, hub id, .gguf file) and `save_pretrained` (transformers-loadable folder)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np
from flax import nnx

from ftjax.io import atomic_dir
from ftjax.models import convert
from ftjax.models.config import ModelConfig, from_hf
from ftjax.models.decoder import CausalLM
from ftjax.models.gpt2 import GPT2LM
from ftjax.models.heads import RegressionHead, export_head

_HUB_PATTERNS = ["*.json", "*.safetensors", "tokenizer.model", "*.jinja"]


def resolve(path_or_hub_id: str | os.PathLike) -> Path:
    """A local folder or .gguf file as is; anything else is a hub id (honours HF_HUB_OFFLINE)."""
    if not str(path_or_hub_id).strip():
        raise ValueError("no model given: pass a model folder, a hub id (owner/name) or a .gguf file")
    p = Path(path_or_hub_id).expanduser()
    if p.exists():
        return p
    s = str(path_or_hub_id)
    if s.endswith(".gguf") or s.startswith((".", "/", "~")) or s.count("/") != 1:
        raise FileNotFoundError(f"no such model folder or file: {s}")
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(s, allow_patterns=_HUB_PATTERNS))


def hf_config(folder: Path) -> Any:
    from transformers import AutoConfig

    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{folder} has no config.json (not a Hugging Face model folder)")
    return AutoConfig.from_pretrained(folder)


def model_class(cfg: ModelConfig) -> type[CausalLM]:
    """The LM class of a family: GPT-2's own blocks, or the shared rotary decoder."""
    return GPT2LM if cfg.model_type == "gpt2" else CausalLM


def build(cfg: ModelConfig, dtype: Any = jnp.float32, seed: int = 0) -> CausalLM:
    """A randomly initialised model of the right family."""
    return model_class(cfg)(cfg, dtype=dtype, rngs=nnx.Rngs(seed))


def _abstract(cfg: ModelConfig, dtype: Any) -> tuple[nnx.GraphDef, nnx.State, nnx.State]:
    return nnx.split(nnx.eval_shape(lambda: build(cfg, dtype)), nnx.Param, ...)


def _placement(params: nnx.State, mesh: Any, rules: str | dict) -> dict[tuple, Any] | None:
    """Flat param path -> NamedSharding on `mesh` (None without a mesh: load on the host)."""
    if mesh is None:
        return None
    from ftjax import sharding

    placed = sharding.state_shardings(params, mesh, rules)
    return {path: s for path, s in nnx.to_flat_state(placed)}


def _safetensor_files(folder: Path) -> list[Path]:
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return [folder / s for s in shards]
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{folder} has no *.safetensors weights")
    return files


def _open_safetensors(path: Path) -> Any:
    from safetensors import SafetensorError, safe_open

    try:
        return safe_open(path, framework="numpy")  # numpy: slices stay on the host
    except (SafetensorError, OSError) as e:
        raise ValueError(f"{path}: not a readable safetensors file ({e}); download it again") from None


def from_pretrained(path_or_hub_id: str | os.PathLike, dtype: Any = jnp.float32, *, mesh: Any = None,
                    rules: str | dict = "fsdp") -> CausalLM:
    """Load a Hugging Face checkpoint (folder, hub id, or .gguf file) into an ftjax NNX model.

    Given a `mesh`, every parameter is created straight onto it, sharded by its logical axes under `rules`
    (ftjax.sharding): each device reads only its block of each safetensors tensor, so neither the host nor any
    device ever holds the whole model. (A .gguf file is dequantized on the host first: it is for small models.)
    """
    path = resolve(path_or_hub_id)
    if path.suffix == ".gguf":
        from transformers import AutoConfig

        from ftjax.models.gguf import read_gguf

        try:
            config_dict, tensors = read_gguf(path)
        except (ValueError, KeyError, IndexError, OSError) as e:  # unsupported, or a truncated/garbled file
            if "unsupported" in str(e):
                raise
            raise ValueError(f"{path}: not a readable GGUF file ({type(e).__name__}: {str(e)[:200]})") from None
        hf = AutoConfig.for_model(config_dict.pop("model_type"), **config_dict)
        cfg = from_hf(hf)
        graphdef, params, rest = _abstract(cfg, dtype)
        placed = _placement(params, mesh, rules)
        params = convert.load_into(params, cfg, model_class(cfg).layout, list(tensors),
                                   lambda k, index=None: tensors[k] if index is None else tensors[k][index], dtype,
                                   shape_of=lambda k: tensors[k].shape, shardings=placed)
    else:
        from safetensors import SafetensorError

        hf = hf_config(path)
        cfg = from_hf(hf)
        graphdef, params, rest = _abstract(cfg, dtype)
        files = {f: _open_safetensors(f) for f in _safetensor_files(path)}
        where = {k: (f, h) for f, h in files.items() for k in h.keys()}

        def get(key: str, index: tuple | None = None) -> Any:
            file, handle = where[key]
            try:
                return handle.get_tensor(key) if index is None else handle.get_slice(key)[index]
            except SafetensorError as e:  # a truncated or garbled file
                raise ValueError(f"{file}: tensor {key} cannot be read ({e}); download it again") from None

        params = convert.load_into(params, cfg, model_class(cfg).layout, list(where), get, dtype,
                                   shape_of=lambda k: tuple(where[k][1].get_slice(k).get_shape()),
                                   shardings=_placement(params, mesh, rules))
    return nnx.merge(graphdef, params, rest)


def save_pretrained(model: CausalLM, out_dir: str | os.PathLike, dtype: Any | None = None, *,
                    tokenizer: Any | None = None, overwrite: bool = False) -> Path:
    """Write config.json + model.safetensors that transformers' `from_pretrained` loads (and the tokenizer's
    files, so the folder is a complete model); atomic (temp, rename); an existing folder only if `overwrite`.
    A model with a classification head is written as transformers' `*ForSequenceClassification`."""
    from safetensors.numpy import save_file

    out = Path(out_dir)
    tensors = convert.to_hf_state_dict(model, dtype)
    hf_config = model.hf_config
    exported = export_head(model)
    if exported:  # a transformers *ForSequenceClassification model: the head is its `score`
        name, head = exported
        labels = head.labels
        tensors.pop(f"heads.{name}.weight")
        tensors.pop(f"{model.layout.head}.weight", None)
        tensors["score.weight"] = np.ascontiguousarray(np.asarray(head.kernel[...]).T)
        hf_config |= {"architectures": [a.replace("ForCausalLM", "ForSequenceClassification").replace(
            "LMHeadModel", "ForSequenceClassification") for a in hf_config.get("architectures") or []],
            "id2label": dict(enumerate(labels)), "label2id": {k: i for i, k in enumerate(labels)},
            "problem_type": "regression" if isinstance(head, RegressionHead) else "single_label_classification"}
    if any(v.dtype == jnp.bfloat16 for v in tensors.values()):
        tensors = {k: v.astype(np.float32) if v.dtype == jnp.bfloat16 else v for k, v in tensors.items()}
        # numpy safetensors cannot write bfloat16; float32 loses nothing and transformers casts on load
    with atomic_dir(out, overwrite) as tmp:
        save_file(tensors, tmp / "model.safetensors", metadata={"format": "pt"})
        (tmp / "config.json").write_text(json.dumps(hf_config, indent=2, default=str))
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
    return out
